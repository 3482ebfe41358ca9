//! The development CA and the certificates it signs.
//!
//! One CA signs both the server certificate and the partners' client certificates,
//! so `tls/ca.pem` is at once what a partner trusts and what the gateway accepts
//! for mutual TLS. Every key is ECDSA P-256: the one algorithm every TLS stack
//! takes.

use anyhow::Context as _;
use chrono::{DateTime, Datelike as _, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CertifiedKey, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use secrecy::zeroize::Zeroizing;

/// How long the certificates stay valid. Long, because the example set is
/// committed and should keep working; development only, so no rotation story.
const VALIDITY_YEARS: i32 = 10;

const ORGANIZATION: &str = "Crosswalk development";

pub(super) struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl DevCa {
    /// A self-signed CA that may sign end-entity certificates only (path length 0).
    pub(super) fn generate(now: DateTime<Utc>) -> anyhow::Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Crosswalk development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now)?;
        let issuer = CertifiedIssuer::self_signed(params, p256_key()?)
            .context("signing the development CA certificate")?;
        Ok(Self { issuer })
    }

    pub(super) fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    pub(super) fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// The gateway's certificate: `localhost`, `127.0.0.1` and `::1`.
    pub(super) fn server_cert(&self, now: DateTime<Utc>) -> anyhow::Result<CertifiedKey<KeyPair>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name("localhost");
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().context("the DNS name localhost")?),
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, now, "the server certificate")
    }

    /// A partner's client certificate, named by its partner id.
    pub(super) fn client_cert(
        &self,
        partner_id: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<CertifiedKey<KeyPair>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(partner_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, now, "a partner's client certificate")
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        now: DateTime<Utc>,
        what: &'static str,
    ) -> anyhow::Result<CertifiedKey<KeyPair>> {
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, now)?;
        let signing_key = p256_key()?;
        let cert = params
            .signed_by(&signing_key, &self.issuer)
            .with_context(|| format!("signing {what}"))?;
        Ok(CertifiedKey { cert, signing_key })
    }
}

fn name(common_name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn p256_key() -> anyhow::Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating an ECDSA P-256 key")
}

/// From midnight UTC today (so a certificate is valid the moment it is written)
/// to the first of this month, [`VALIDITY_YEARS`] on (a date that always exists).
fn set_validity(params: &mut CertificateParams, now: DateTime<Utc>) -> anyhow::Result<()> {
    let month = u8::try_from(now.month()).context("month out of range")?;
    let day = u8::try_from(now.day()).context("day out of range")?;
    params.not_before = rcgen::date_time_ymd(now.year(), month, day);
    params.not_after = rcgen::date_time_ymd(now.year() + VALIDITY_YEARS, month, 1);
    Ok(())
}
