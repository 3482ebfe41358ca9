//! Partner authentication: Ed25519-signed JWTs checked against the registry.
//!
//! Each partner signs its own short-lived tokens (`sub` = its id, `aud` =
//! `crosswalk`) with its private key; the registry holds only the public key. A
//! token is accepted when, in this order:
//! 1. its header names `EdDSA` (so `none`, HMAC and every other algorithm are
//!    refused before any key is touched: an HS256 token "signed" with a partner's
//!    public key never reaches a verifier);
//! 2. its `sub` is a partner in the registry, and that partner is active;
//! 3. its signature verifies with that partner's registered key;
//! 4. `aud` is `crosswalk`, `exp` and `iat` are present, `exp` has not passed,
//!    `nbf` (if present) and `iat` are not in the future, and `exp - iat` is within
//!    `auth.max_token_lifetime_secs` (all with `auth.leeway_secs` of clock skew);
//! 5. if the partner is bound to a client certificate, the connection presented
//!    that certificate.
//!
//! The partner's kind always comes from the registry, never from the token.
//! Times are checked against the [`Clock`] passed in, not by jsonwebtoken, so that
//! expiry is testable without sleeping.
//!
//! # The verified-token cache
//! An Ed25519 signature check costs ~30 µs, and a partner system sends the same token
//! with every request until it expires. So a token that passed steps 1-4 is
//! remembered — by the BLAKE3 hash of the token, never the token itself — with
//! its partner, its time window and the certificate its partner is bound to. A
//! hit skips the signature, but still checks the window against the clock (so a
//! cached token expires exactly when an uncached one would) and the connection's
//! certificate (step 5, which depends on the connection, not the token). The
//! registry does not change while the gateway runs, so a cached answer about a
//! partner stays true; were it ever reloaded, the cache must be cleared with it.
//! The cache holds at most [`TOKEN_CACHE_CAPACITY`] tokens: when full, expired
//! ones are dropped, and if none has expired it is emptied (a flood of distinct
//! valid tokens then costs verifications, never memory).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{Config, ConfigError, PartnerKind, parse_fingerprint};
use crate::domain::PartnerId;

/// The audience every partner token must name.
pub const AUDIENCE: &str = "crosswalk";

/// A partner as the gateway knows it at run time, with its parsed key.
pub struct RegisteredPartner {
    pub id: PartnerId,
    pub kind: PartnerKind,
    pub name: String,
    pub active: bool,
    /// The partner's purpose of use when a request declares none (validated
    /// when the configuration loaded), or `None` for its kind's default.
    pub default_purpose: Option<String>,
    key: DecodingKey,
    cert_fingerprint: Option<[u8; 32]>,
}

impl fmt::Debug for RegisteredPartner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredPartner")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The partner registry, built from the configuration at start-up.
#[derive(Debug, Default)]
pub struct Registry {
    partners: HashMap<String, RegisteredPartner>,
}

impl Registry {
    /// Parses every partner's public key; a key that is not an Ed25519 SPKI PEM
    /// fails start-up naming the partner.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut partners = HashMap::new();
        for (id, p) in &config.partners {
            let key = parse_ed25519_public_key(&p.public_key).map_err(|problem| {
                ConfigError::new(&config.source, format!("partners.{id}.public_key"), problem)
            })?;
            let cert_fingerprint = p.cert_fingerprint.as_deref().and_then(parse_fingerprint);
            let partner_id = PartnerId::parse(id).ok_or_else(|| {
                ConfigError::new(
                    &config.source,
                    format!("partners.{id}"),
                    "a partner id is 1-64 of a-z, 0-9 and -",
                )
            })?;
            partners.insert(
                id.clone(),
                RegisteredPartner {
                    id: partner_id,
                    kind: p.kind,
                    name: p.name.clone(),
                    active: p.active,
                    default_purpose: p.default_purpose.clone(),
                    key,
                    cert_fingerprint,
                },
            );
        }
        Ok(Self { partners })
    }

    pub fn get(&self, id: &str) -> Option<&RegisteredPartner> {
        self.partners.get(id)
    }
}

/// `DecodingKey::from_ed_pem` accepts any PEM it can classify, so the key type is
/// checked here explicitly: an RSA or EC key in the registry is a configuration
/// error, not a partner that can never log in.
fn parse_ed25519_public_key(pem: &str) -> Result<DecodingKey, &'static str> {
    use rustls::pki_types::SubjectPublicKeyInfoDer;
    use rustls::pki_types::pem::PemObject as _;
    // The DER of an Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix
    // (SEQUENCE, AlgorithmIdentifier id-Ed25519, BIT STRING) and the 32-byte key.
    const ED25519_SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "is not a PEM public key (-----BEGIN PUBLIC KEY-----)")?;
    let der = spki.as_ref();
    if der.len() != 44 || der[..12] != ED25519_SPKI_PREFIX {
        return Err("is not an Ed25519 public key");
    }
    Ok(DecodingKey::from_ed_der(&der[12..]))
}

/// Why a token was refused. The text is safe to log and to return: it never
/// includes the token or key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    MissingToken,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not EdDSA")]
    UnsupportedAlgorithm,
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("the token's sub is not a registered partner")]
    UnknownPartner,
    #[error("the partner is not active")]
    InactivePartner,
    #[error("the token's signature does not verify with the partner's key")]
    BadSignature,
    #[error("the token's audience is not crosswalk")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than the gateway allows")]
    LifetimeTooLong,
    #[error("the partner must present its client certificate")]
    CertificateRequired,
    /// RFC 7515 §4.1.11: a recipient must reject a token whose `crit` header
    /// lists extensions it does not understand; we understand none.
    #[error(
        "the token's header lists critical extensions (crit), which the gateway does not support"
    )]
    CriticalExtension,
    /// `auth.replay_protection`: this token's `jti` was seen before.
    #[error("the token was used before (its jti is spent): sign a new token for each request")]
    Replayed,
    /// `auth.replay_protection`: the partner has more unexpired tokens in use
    /// than the replay cache holds for it.
    #[error("too many unexpired tokens are in use for this partner: retry shortly")]
    ReplayCacheFull,
}

impl AuthError {
    /// A stable label for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MissingClaim(_) => "missing_claim",
            Self::UnknownPartner => "unknown_partner",
            Self::InactivePartner => "inactive_partner",
            Self::BadSignature => "bad_signature",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::CertificateRequired => "certificate_required",
            Self::CriticalExtension => "critical_extension",
            Self::Replayed => "replayed",
            Self::ReplayCacheFull => "replay_cache_full",
        }
    }

    /// What the caller is told. Unknown, inactive and badly signed tokens get the
    /// same answer so that the registry cannot be enumerated; the log keeps the
    /// precise reason.
    pub fn public_detail(self) -> String {
        match self {
            Self::UnknownPartner | Self::InactivePartner | Self::BadSignature => {
                "the token is not signed by an active registered partner".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// The partner a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedPartner {
    /// Registered when the request came in (the registry was asked).
    pub id: PartnerId,
    pub kind: PartnerKind,
    /// The registry's default purpose of use for this partner, if it has one.
    pub default_purpose: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// A string or an array; jsonwebtoken checks it names `crosswalk`.
    aud: serde_json::Value,
    /// Optional here so that a missing claim is reported as missing, not as a
    /// malformed token; [`Verifier::check_times`] requires both.
    iat: Option<i64>,
    exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// How many verified tokens the [`Verifier`] remembers.
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// A verified token, as remembered: what the checks that do not depend on the
/// signature need again on each use.
#[derive(Clone)]
struct VerifiedToken {
    partner: AuthenticatedPartner,
    exp: i64,
    /// The later of `iat` and `nbf`.
    not_before: i64,
    cert_fingerprint: Option<[u8; 32]>,
    /// BLAKE3 of the `jti` claim, for the replay cache (never the value).
    jti: Option<[u8; 32]>,
}

/// Checks partner tokens. Shared by every request.
pub struct Verifier {
    registry: Arc<Registry>,
    validation: Validation,
    max_lifetime_secs: i64,
    leeway_secs: i64,
    clock: Arc<dyn Clock>,
    /// Verified tokens by BLAKE3 of the token. A std Mutex: held for a lookup or
    /// an insert, never across an await.
    verified: Mutex<HashMap<[u8; 32], VerifiedToken>>,
    /// What an unknown or inactive partner's token is verified against, so
    /// that refusing it costs what refusing a registered partner's bad
    /// signature costs (no timing oracle for the registry).
    decoy: DecodingKey,
    /// `auth.replay_protection`: the spent `jti`s, when on.
    replay: Option<ReplayCache>,
}

/// The public key of RFC 8032's first Ed25519 test vector: a valid key whose
/// private half is published, so nothing it "verifies" could matter. Only its
/// cost is used ([`Verifier::decoy`]).
const DECOY_ED25519_PUBLIC_KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// The `jti`s of tokens already used, per partner, each kept until its token
/// expires (with the leeway): a token is accepted once. Bounded: at most
/// `per_partner` unexpired tokens per partner, so one partner's flood costs
/// only that partner (its new tokens are refused until some expire), never
/// another partner's service or unbounded memory. Per process: replicas do
/// not share it (documented in docs/api.md, "Authentication").
struct ReplayCache {
    per_partner: usize,
    /// partner id -> BLAKE3 of the jti -> the token's expiry. A std Mutex,
    /// never held across an await.
    spent: Mutex<HashMap<String, HashMap<[u8; 32], i64>>>,
}

impl ReplayCache {
    /// Spends `jti` for `partner`, or says why it cannot be.
    fn spend(&self, partner: &str, jti: [u8; 32], expires: i64, now: i64) -> Result<(), AuthError> {
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = spent.entry(partner.to_owned()).or_default();
        if seen.contains_key(&jti) {
            return Err(AuthError::Replayed);
        }
        if seen.len() >= self.per_partner {
            seen.retain(|_, expiry| now <= *expiry);
            if seen.len() >= self.per_partner {
                return Err(AuthError::ReplayCacheFull);
            }
        }
        seen.insert(jti, expires);
        Ok(())
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(registry: Arc<Registry>, config: &Config, clock: Arc<dyn Clock>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time is checked below against our clock; jsonwebtoken checks the
        // signature, the audience and that the claims are present.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "sub"]);
        Self {
            registry,
            validation,
            max_lifetime_secs: i64::try_from(config.auth.max_token_lifetime_secs)
                .unwrap_or(i64::MAX),
            leeway_secs: i64::try_from(config.auth.leeway_secs).unwrap_or(i64::MAX),
            clock,
            verified: Mutex::new(HashMap::new()),
            decoy: DecodingKey::from_ed_der(&DECOY_ED25519_PUBLIC_KEY),
            replay: config.auth.replay_protection.then(|| ReplayCache {
                per_partner: config.auth.replay_cache_per_partner,
                spent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Verifies `token`; `peer_cert` is the SHA-256 of the client certificate the
    /// connection presented, if any.
    pub fn verify(
        &self,
        token: &str,
        peer_cert: Option<&[u8; 32]>,
    ) -> Result<AuthenticatedPartner, AuthError> {
        self.verify_naming_signer(token, peer_cert)
            .map_err(|(error, _)| error)
    }

    /// [`Verifier::verify`], and on refusal also the partner whose registered
    /// key verified the token's signature, if it got that far (expired, not yet
    /// valid, too long-lived, wrong certificate): the audit log may name a
    /// partner only when the signature proves it was them.
    pub fn verify_naming_signer(
        &self,
        token: &str,
        peer_cert: Option<&[u8; 32]>,
    ) -> Result<AuthenticatedPartner, (AuthError, Option<PartnerId>)> {
        let digest = *blake3::hash(token.as_bytes()).as_bytes();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
            .cloned();
        let verified = if let Some(hit) = cached {
            hit
        } else {
            let verified = self.verify_signed(token)?;
            self.remember(digest, verified.clone());
            verified
        };
        // From here on the signature verified under this partner's key.
        let signed = |error| (error, Some(verified.partner.id.clone()));
        self.check_window(verified.exp, verified.not_before)
            .map_err(signed)?;
        if let Some(required) = &verified.cert_fingerprint
            && peer_cert != Some(required)
        {
            return Err(signed(AuthError::CertificateRequired));
        }
        // A partner bound to its certificate cannot have a stolen token
        // replayed from elsewhere; the others may be held to one use a token.
        if let Some(replay) = &self.replay
            && verified.cert_fingerprint.is_none()
        {
            let jti = verified
                .jti
                .ok_or_else(|| signed(AuthError::MissingClaim("jti")))?;
            let expires = verified.exp.saturating_add(self.leeway_secs);
            replay
                .spend(
                    &verified.partner.id,
                    jti,
                    expires,
                    self.clock.now().timestamp(),
                )
                .map_err(signed)?;
        }
        Ok(verified.partner)
    }

    /// Steps 1-4 without the cache. A refusal names the partner only once the
    /// signature verified under its key.
    fn verify_signed(&self, token: &str) -> Result<VerifiedToken, (AuthError, Option<PartnerId>)> {
        let unsigned = |error| (error, None);
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unsigned(AuthError::Malformed))?;
        if header.alg != Algorithm::EdDSA {
            return Err(unsigned(AuthError::UnsupportedAlgorithm));
        }
        if header.crit.is_some() {
            return Err(unsigned(AuthError::CriticalExtension));
        }
        // The signature can only be checked once we know whose key to use, so the
        // subject is read first; nothing else from the unverified claims is used.
        let unverified: UnverifiedSubject = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| unsigned(AuthError::Malformed))?;
        let sub = unverified
            .sub
            .ok_or(unsigned(AuthError::MissingClaim("sub")))?;
        let refused = match self.registry.get(&sub) {
            None => Some(AuthError::UnknownPartner),
            Some(partner) if !partner.active => Some(AuthError::InactivePartner),
            Some(_) => None,
        };
        if let Some(refused) = refused {
            // The same signature check a registered partner's token gets,
            // against a key that signs nothing we accept: the refusal then
            // takes as long as a bad signature's, and the two cannot be told
            // apart by timing. Its result is irrelevant.
            let _ = jsonwebtoken::decode::<Claims>(token, &self.decoy, &self.validation);
            return Err(unsigned(refused));
        }
        let partner = self
            .registry
            .get(&sub)
            .ok_or(unsigned(AuthError::UnknownPartner))?;
        let data = jsonwebtoken::decode::<Claims>(token, &partner.key, &self.validation)
            .map_err(|e| unsigned(map_jwt_error(e.kind())))?;
        let signed = |error| (error, Some(partner.id.clone()));
        let claims = &data.claims;
        let exp = claims.exp.ok_or(signed(AuthError::MissingClaim("exp")))?;
        let iat = claims.iat.ok_or(signed(AuthError::MissingClaim("iat")))?;
        let not_before = claims.nbf.unwrap_or(iat).max(iat);
        self.check_window(exp, not_before).map_err(signed)?;
        if exp.saturating_sub(iat) > self.max_lifetime_secs {
            return Err(signed(AuthError::LifetimeTooLong));
        }
        Ok(VerifiedToken {
            partner: AuthenticatedPartner {
                id: partner.id.clone(),
                kind: partner.kind,
                default_purpose: partner.default_purpose.clone(),
            },
            exp,
            not_before,
            cert_fingerprint: partner.cert_fingerprint,
            jti: claims
                .jti
                .as_ref()
                .map(|jti| *blake3::hash(jti.as_bytes()).as_bytes()),
        })
    }

    /// The token's time window against the clock, with the leeway.
    fn check_window(&self, exp: i64, not_before: i64) -> Result<(), AuthError> {
        let now = self.clock.now().timestamp();
        if now > exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if not_before > now.saturating_add(self.leeway_secs) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }

    /// Remembers a verified token, making room as the module docs describe.
    fn remember(&self, digest: [u8; 32], verified: VerifiedToken) {
        let now = self.clock.now().timestamp();
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= TOKEN_CACHE_CAPACITY {
            cache.retain(|_, t| now <= t.exp.saturating_add(self.leeway_secs));
            if cache.len() >= TOKEN_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(digest, verified);
    }
}

#[derive(Deserialize)]
struct UnverifiedSubject {
    sub: Option<String>,
}

fn map_jwt_error(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature | K::InvalidEddsaKey => AuthError::BadSignature,
        K::InvalidAudience => AuthError::WrongAudience,
        K::InvalidAlgorithm | K::UnsupportedAlgorithm | K::InvalidAlgorithmName => {
            AuthError::UnsupportedAlgorithm
        }
        K::MissingRequiredClaim(claim) => AuthError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iat" => "iat",
            "aud" => "aud",
            _ => "sub",
        }),
        _ => AuthError::Malformed,
    }
}

/// Mints a development token for `partner_id`, signed with the Ed25519 key at
/// `key_path` (PKCS#8 PEM). Partners' own systems do the same with any JWT library.
pub fn issue_token(
    config: &Config,
    partner_id: &str,
    key_path: &Path,
    ttl: Duration,
    (clock, randomness): (&dyn Clock, &dyn crate::randomness::Randomness),
) -> anyhow::Result<String> {
    anyhow::ensure!(
        config.partners.contains_key(partner_id),
        "partner {partner_id:?} is not in the registry ({})",
        config.source.display()
    );
    let ttl_secs = ttl.as_secs();
    anyhow::ensure!(ttl_secs > 0, "--ttl must be at least 1s");
    anyhow::ensure!(
        ttl_secs <= config.auth.max_token_lifetime_secs,
        "--ttl {ttl_secs}s exceeds auth.max_token_lifetime_secs ({}s); the gateway would refuse it",
        config.auth.max_token_lifetime_secs
    );
    let pem = std::fs::read(key_path)
        .with_context(|| format!("reading the partner key {}", key_path.display()))?;
    let key = EncodingKey::from_ed_pem(&pem)
        .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 PEM key", key_path.display()))?;
    let now = clock.now().timestamp();
    let mut jti = [0u8; 16];
    randomness.fill(&mut jti)?;
    let claims = Claims {
        sub: partner_id.to_owned(),
        aud: serde_json::Value::from(AUDIENCE),
        iat: Some(now),
        nbf: Some(now),
        exp: Some(now.saturating_add(i64::try_from(ttl_secs)?)),
        jti: Some(
            uuid::Builder::from_random_bytes(jti)
                .into_uuid()
                .to_string(),
        ),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).context("signing the token")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{TimeZone as _, Utc};

    use super::*;
    use crate::clock::FixedClock;

    const NOW: i64 = 1_800_000_000;

    fn example_config() -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml");
        Config::load(&path, std::iter::empty()).expect("example config")
    }

    fn verifier_at(now: i64) -> Verifier {
        let config = example_config();
        let registry = Arc::new(Registry::from_config(&config).expect("registry"));
        let clock = FixedClock(Utc.timestamp_opt(now, 0).single().expect("time"));
        Verifier::new(registry, &config, Arc::new(clock))
    }

    fn token(iat: i64, exp: i64, nbf: Option<i64>) -> String {
        let config = example_config();
        let pem = std::fs::read(config.key_path(Path::new("partners/pd.key.pem"))).expect("key");
        let claims = Claims {
            sub: "pd".to_owned(),
            aud: serde_json::Value::from(AUDIENCE),
            iat: Some(iat),
            exp: Some(exp),
            nbf,
            jti: None,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(&pem).expect("pem"),
        )
        .expect("sign")
    }

    /// A token of `sub` signed with pd's key, with `header` and `jti`.
    fn token_with(sub: &str, header: &Header, jti: Option<&str>) -> String {
        let config = example_config();
        let pem = std::fs::read(config.key_path(Path::new("partners/pd.key.pem"))).expect("key");
        let claims = Claims {
            sub: sub.to_owned(),
            aud: serde_json::Value::from(AUDIENCE),
            iat: Some(NOW - 10),
            exp: Some(NOW + 300),
            nbf: None,
            jti: jti.map(str::to_owned),
        };
        jsonwebtoken::encode(
            header,
            &claims,
            &EncodingKey::from_ed_pem(&pem).expect("pem"),
        )
        .expect("sign")
    }

    #[test]
    fn a_token_with_critical_extensions_is_refused() {
        let verifier = verifier_at(NOW);
        let mut header = Header::new(Algorithm::EdDSA);
        header.crit = Some(vec!["foo".to_owned()]);
        let signed_by_pd = token_with("pd", &header, None);
        assert_eq!(
            verifier.verify(&signed_by_pd, None),
            Err(AuthError::CriticalExtension),
            "RFC 7515 §4.1.11: an extension we do not understand is refused"
        );
        header.crit = Some(Vec::new());
        assert_eq!(
            verifier.verify(&token_with("pd", &header, None), None),
            Err(AuthError::CriticalExtension)
        );
        let plain = token_with("pd", &Header::new(Algorithm::EdDSA), None);
        assert!(verifier.verify(&plain, None).is_ok());
    }

    /// Refusing an unknown partner's token costs a signature check, like
    /// refusing a registered partner's badly signed one: the medians of
    /// interleaved rounds stay within a factor the slowest shared machine
    /// keeps (without the decoy check the unknown path is over ten times
    /// faster: no signature is checked at all).
    #[test]
    fn an_unknown_partner_is_refused_as_slowly_as_a_bad_signature() {
        let verifier = verifier_at(NOW);
        let header = Header::new(Algorithm::EdDSA);
        // Signed with pd's key but naming cbo-north: registered, bad signature.
        let bad_signature = token_with("cbo-north", &header, None);
        let unknown = token_with("nobody-registered", &header, None);
        assert_eq!(
            verifier.verify(&bad_signature, None),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verifier.verify(&unknown, None),
            Err(AuthError::UnknownPartner)
        );
        let time = |token: &str| {
            let started = std::time::Instant::now();
            let _ = verifier.verify(token, None);
            started.elapsed()
        };
        let (mut registered, mut unregistered) = (Vec::new(), Vec::new());
        for _ in 0..9 {
            let mut a: Vec<_> = (0..11).map(|_| time(&bad_signature)).collect();
            let mut b: Vec<_> = (0..11).map(|_| time(&unknown)).collect();
            a.sort();
            b.sort();
            registered.push(a[5]);
            unregistered.push(b[5]);
        }
        registered.sort();
        unregistered.sort();
        let (registered, unregistered) = (registered[4], unregistered[4]);
        assert!(
            unregistered * 2 >= registered && registered * 2 >= unregistered,
            "median refusal: unknown partner {unregistered:?}, bad signature {registered:?}"
        );
    }

    fn verifier_with_replay(now: i64, per_partner: usize) -> Verifier {
        let mut config = example_config();
        config.auth.replay_protection = true;
        config.auth.replay_cache_per_partner = per_partner;
        let registry = Arc::new(Registry::from_config(&config).expect("registry"));
        let clock = FixedClock(Utc.timestamp_opt(now, 0).single().expect("time"));
        Verifier::new(registry, &config, Arc::new(clock))
    }

    #[test]
    fn with_replay_protection_a_token_is_accepted_once() {
        let verifier = verifier_with_replay(NOW, 2);
        let header = Header::new(Algorithm::EdDSA);
        let first = token_with("pd", &header, Some("jti-1"));
        assert!(verifier.verify(&first, None).is_ok());
        assert_eq!(verifier.verify(&first, None), Err(AuthError::Replayed));
        assert_eq!(
            verifier.verify(&token_with("pd", &header, None), None),
            Err(AuthError::MissingClaim("jti"))
        );
        assert!(
            verifier
                .verify(&token_with("pd", &header, Some("jti-2")), None)
                .is_ok()
        );
        // Two unexpired tokens spent: the third waits until one expires.
        assert_eq!(
            verifier.verify(&token_with("pd", &header, Some("jti-3")), None),
            Err(AuthError::ReplayCacheFull)
        );
        let later = verifier_with_replay(NOW + 400, 2);
        assert!(
            later
                .verify(&token_with("pd", &header, Some("jti-3")), None)
                .is_err(),
            "a new process has its own cache, and the token has expired anyway"
        );
        // Without it (the default), a token is reused until it expires.
        let verifier = verifier_at(NOW);
        assert!(verifier.verify(&first, None).is_ok());
        assert!(verifier.verify(&first, None).is_ok());
    }

    #[test]
    fn expiry_is_judged_by_the_clock_with_leeway() {
        let t = token(NOW - 600, NOW, None);
        assert!(verifier_at(NOW).verify(&t, None).is_ok());
        assert!(
            verifier_at(NOW + 30).verify(&t, None).is_ok(),
            "within leeway"
        );
        assert_eq!(
            verifier_at(NOW + 31).verify(&t, None),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn tokens_from_the_future_wait_for_their_time() {
        let t = token(NOW, NOW + 600, Some(NOW + 120));
        assert_eq!(
            verifier_at(NOW).verify(&t, None),
            Err(AuthError::NotYetValid)
        );
        assert!(verifier_at(NOW + 120).verify(&t, None).is_ok());
        let issued_ahead = token(NOW + 300, NOW + 600, None);
        assert_eq!(
            verifier_at(NOW).verify(&issued_ahead, None),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn lifetime_is_capped_by_configuration() {
        let at_cap = token(NOW, NOW + 3600, None);
        assert!(verifier_at(NOW).verify(&at_cap, None).is_ok());
        let over = token(NOW, NOW + 3601, None);
        assert_eq!(
            verifier_at(NOW).verify(&over, None),
            Err(AuthError::LifetimeTooLong)
        );
    }

    /// A clock the test moves.
    struct SteppingClock(std::sync::atomic::AtomicI64);

    impl Clock for SteppingClock {
        fn now(&self) -> chrono::DateTime<Utc> {
            let secs = self.0.load(std::sync::atomic::Ordering::SeqCst);
            Utc.timestamp_opt(secs, 0).single().expect("time")
        }
    }

    fn verifier_with(config: &Config, clock: &Arc<SteppingClock>) -> Verifier {
        let registry = Arc::new(Registry::from_config(config).expect("registry"));
        Verifier::new(registry, config, Arc::clone(clock) as Arc<dyn Clock>)
    }

    #[test]
    fn a_cached_token_still_expires_by_the_clock() {
        let clock = Arc::new(SteppingClock(NOW.into()));
        let verifier = verifier_with(&example_config(), &clock);
        let t = token(NOW - 600, NOW, None);
        assert!(verifier.verify(&t, None).is_ok());
        assert!(verifier.verify(&t, None).is_ok(), "a hit");
        assert_eq!(verifier.verified.lock().expect("lock").len(), 1);
        clock.0.store(NOW + 31, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(verifier.verify(&t, None), Err(AuthError::Expired));
        // A bad signature is never remembered, so it never becomes a hit.
        let forged = format!("{}x", &t[..t.len() - 1]);
        assert!(verifier.verify(&forged, None).is_err());
        assert!(verifier.verify(&forged, None).is_err());
        assert_eq!(verifier.verified.lock().expect("lock").len(), 1);
    }

    #[test]
    fn a_cached_token_is_still_bound_to_its_certificate() {
        let cert = [7u8; 32];
        let config = Config::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml"),
            [(
                "CROSSWALK_PARTNERS__PD__CERT_FINGERPRINT".to_owned(),
                format!("\"sha256:{}\"", hex::encode(cert)),
            )],
        )
        .expect("config");
        let clock = Arc::new(SteppingClock(NOW.into()));
        let verifier = verifier_with(&config, &clock);
        let t = token(NOW - 60, NOW + 60, None);
        assert!(verifier.verify(&t, Some(&cert)).is_ok());
        assert_eq!(
            verifier.verify(&t, None),
            Err(AuthError::CertificateRequired)
        );
        assert_eq!(
            verifier.verify(&t, Some(&[8; 32])),
            Err(AuthError::CertificateRequired)
        );
    }

    #[test]
    fn the_registry_refuses_keys_that_are_not_ed25519() {
        // An ECDSA P-256 public key (from a TLS key pair) where Ed25519 belongs.
        let ec = rcgen::KeyPair::generate().expect("P-256").public_key_pem();
        assert_eq!(
            parse_ed25519_public_key(&ec).err(),
            Some("is not an Ed25519 public key")
        );
        assert!(parse_ed25519_public_key("not pem").is_err());
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let config = example_config();
        let registry = Registry::from_config(&config).expect("registry");
        let printed = format!("{registry:?}");
        assert!(!printed.contains("BEGIN"), "{printed}");
        assert!(!printed.contains(&config.partners["pd"].public_key[30..60]));
    }
}
