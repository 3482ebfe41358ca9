//! Development key sets: `crosswalk keys generate DIR`.
//!
//! [`generate`] writes everything a gateway and its example partners need to run
//! locally — the gateway's master secret, vault identity and signing key, a private
//! CA with a server certificate and one client certificate per partner, each
//! partner's token-signing key — and an example `crosswalk.toml` that points at
//! them. `keys-example/` in the repository is one such set. None of it is ever for
//! production: the private keys of the committed set are public knowledge.
//!
//! # Formats
//! Chosen so that stock tools read every file:
//! - Ed25519 and ECDSA private keys: PKCS#8 PEM (`BEGIN PRIVATE KEY`); public keys:
//!   SPKI PEM (`BEGIN PUBLIC KEY`) — `openssl pkey`, jsonwebtoken and rustls all
//!   take these.
//! - age identities: the `age-keygen` file format, so `age -d -i FILE` works.
//! - The master secret: 64 lowercase hex digits and a newline.
//!
//! # Safety
//! Every file is created with `create_new`, so nothing is ever overwritten, and a
//! directory that already holds a `crosswalk.toml` is refused up front. Secret files
//! are created with mode 0600 — they are never world-readable, not even between
//! `open` and `chmod`. Key material never appears in an error or on the terminal.
//!
//! # Adding a partner or a setting to the example
//! A partner: add it to [`EXAMPLE_PARTNERS`]; its key files and registry entry
//! follow. A setting: add it to `example::example_config`, and the test below checks
//! that the result still loads.

mod example;
mod tls;

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::ExposeSecret as _;
use secrecy::zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::config::PartnerKind;
use crate::randomness::{OsRandomness, Randomness};

/// One partner of the example set.
#[derive(Debug, Clone, Copy)]
pub struct ExamplePartner {
    pub id: &'static str,
    pub kind: PartnerKind,
    pub name: &'static str,
}

/// The example partners: one of each kind, and two CBOs so that routing between
/// them can be shown.
pub const EXAMPLE_PARTNERS: &[ExamplePartner] = &[
    ExamplePartner {
        id: "pd",
        kind: PartnerKind::Police,
        name: "Example Police Department",
    },
    ExamplePartner {
        id: "county-health",
        kind: PartnerKind::Health,
        name: "Example County Health",
    },
    ExamplePartner {
        id: "cbo-north",
        kind: PartnerKind::Cbo,
        name: "North Community Services",
    },
    ExamplePartner {
        id: "cbo-south",
        kind: PartnerKind::Cbo,
        name: "South Community Services",
    },
    ExamplePartner {
        id: "evaluator",
        kind: PartnerKind::Evaluator,
        name: "Example University Evaluation Team",
    },
    ExamplePartner {
        id: "admin",
        kind: PartnerKind::Admin,
        name: "Gateway Administrator",
    },
];

/// The example configuration's file name inside a key set.
pub const CONFIG_FILE: &str = "crosswalk.toml";

/// Mode of every file holding secret material.
const SECRET_MODE: u32 = 0o600;
/// Mode of public files (certificates, public keys, the configuration).
const PUBLIC_MODE: u32 = 0o644;
/// Mode of the sub-directories: only the owner lists what keys exist.
const DIR_MODE: u32 = 0o700;

/// What the example configuration says about one partner: public parts only.
struct PartnerEntry {
    partner: ExamplePartner,
    /// SPKI PEM of the partner's token-signing key.
    public_key_pem: String,
    /// `sha256:<hex>` of the partner's client certificate.
    cert_fingerprint: String,
    /// The partner's age recipient, for partners that receive encrypted files.
    age_recipient: Option<String>,
}

/// Writes a fresh development key set and example configuration into `dir`,
/// creating it. Refuses a directory that already holds a `crosswalk.toml`, and
/// never overwrites any file.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    generate_with(dir, &SystemClock, &OsRandomness)
}

/// [`generate`], with "now" (certificate validity, identity-file timestamps) read
/// from `clock` and the keys' bytes drawn from `randomness`. (The age identity
/// and the certificates' serial numbers come from `age` and `rcgen`, which draw
/// their own from the operating system.)
pub fn generate_with(
    dir: &Path,
    clock: &impl Clock,
    randomness: &dyn Randomness,
) -> anyhow::Result<()> {
    let config_path = dir.join(CONFIG_FILE);
    let exists = config_path
        .try_exists()
        .with_context(|| format!("checking for {}", config_path.display()))?;
    if exists {
        bail!(
            "{} already exists: refusing to overwrite a key set (delete the directory to regenerate)",
            config_path.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for sub in ["gateway", "tls", "partners"] {
        create_private_dir(&dir.join(sub))?;
    }

    let now = clock.now();
    write_gateway_keys(&dir.join("gateway"), now, randomness)?;
    let ca = tls::DevCa::generate(now)?;
    write_tls(&dir.join("tls"), &ca, now)?;
    let partners = EXAMPLE_PARTNERS
        .iter()
        .map(|partner| write_partner(&dir.join("partners"), *partner, &ca, (now, randomness)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    write_public(&dir.join("README.md"), example::readme(dir).as_bytes())?;
    // Last, so that an interrupted run leaves no configuration pointing at
    // missing files (and the next run fails on the first file that exists).
    write_public(
        &config_path,
        example::example_config(&partners, &example::policy_dir_for(dir)).as_bytes(),
    )?;
    Ok(())
}

/// The master secret, the vault identity (and its recipient) and the gateway's
/// signing key.
fn write_gateway_keys(
    dir: &Path,
    now: DateTime<Utc>,
    randomness: &dyn Randomness,
) -> anyhow::Result<()> {
    let mut master = Zeroizing::new([0u8; 32]);
    fill_random(randomness, master.as_mut_slice())?;
    let mut master_hex = Zeroizing::new(hex::encode(master.as_slice()));
    master_hex.push('\n');
    write_secret(&dir.join("master.key"), master_hex.as_bytes())?;

    let vault = age::x25519::Identity::generate();
    write_secret(
        &dir.join("vault.age"),
        age_identity_file(&vault, now).as_bytes(),
    )?;
    write_public(
        &dir.join("vault.recipient"),
        format!("{}\n", vault.to_public()).as_bytes(),
    )?;

    let signing = ed25519_key(randomness)?;
    write_secret(
        &dir.join("signing.key.pem"),
        Zeroizing::new(signing.serialize_pem()).as_bytes(),
    )?;
    write_public(
        &dir.join("signing.pub.pem"),
        signing.public_key_pem().as_bytes(),
    )?;
    Ok(())
}

/// The CA and the server's certificate.
fn write_tls(dir: &Path, ca: &tls::DevCa, now: DateTime<Utc>) -> anyhow::Result<()> {
    write_public(&dir.join("ca.pem"), ca.cert_pem().as_bytes())?;
    write_secret(&dir.join("ca.key.pem"), ca.key_pem().as_bytes())?;
    let server = ca.server_cert(now)?;
    write_public(&dir.join("server.pem"), server.cert.pem().as_bytes())?;
    write_secret(
        &dir.join("server.key.pem"),
        Zeroizing::new(server.signing_key.serialize_pem()).as_bytes(),
    )?;
    Ok(())
}

/// One partner's token-signing key pair, client certificate and, for the
/// evaluator, age identity.
fn write_partner(
    dir: &Path,
    partner: ExamplePartner,
    ca: &tls::DevCa,
    (now, randomness): (DateTime<Utc>, &dyn Randomness),
) -> anyhow::Result<PartnerEntry> {
    let id = partner.id;
    let signing = ed25519_key(randomness)?;
    write_secret(
        &dir.join(format!("{id}.key.pem")),
        Zeroizing::new(signing.serialize_pem()).as_bytes(),
    )?;
    let public_key_pem = signing.public_key_pem();
    write_public(
        &dir.join(format!("{id}.pub.pem")),
        public_key_pem.as_bytes(),
    )?;

    let client = ca.client_cert(id, now)?;
    write_public(
        &dir.join(format!("{id}.cert.pem")),
        client.cert.pem().as_bytes(),
    )?;
    write_secret(
        &dir.join(format!("{id}.cert.key.pem")),
        Zeroizing::new(client.signing_key.serialize_pem()).as_bytes(),
    )?;

    let age_recipient = if partner.kind == PartnerKind::Evaluator {
        let identity = age::x25519::Identity::generate();
        write_secret(
            &dir.join(format!("{id}.age")),
            age_identity_file(&identity, now).as_bytes(),
        )?;
        Some(identity.to_public().to_string())
    } else {
        None
    };

    Ok(PartnerEntry {
        partner,
        public_key_pem,
        cert_fingerprint: crate::config::format_fingerprint(client.cert.der()),
        age_recipient,
    })
}

/// A fresh Ed25519 key whose `serialize_pem` is PKCS#8 *v1* (RFC 8410 §7, what
/// `openssl genpkey -algorithm ed25519` writes). rcgen's own generator writes v2
/// (with the public key appended), which OpenSSL 3.0 — and so Node.js and other
/// JWT libraries built on it — cannot read. The seed is all an Ed25519 private key
/// is, so it is drawn here and wrapped in the fixed v1 prefix.
fn ed25519_key(randomness: &dyn Randomness) -> anyhow::Result<rcgen::KeyPair> {
    /// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }
    const PKCS8_V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new([0u8; PKCS8_V1_PREFIX.len() + 32]);
    der[..PKCS8_V1_PREFIX.len()].copy_from_slice(&PKCS8_V1_PREFIX);
    fill_random(randomness, &mut der[PKCS8_V1_PREFIX.len()..])?;
    rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .context("generating an Ed25519 key")
}

fn fill_random(randomness: &dyn Randomness, buf: &mut [u8]) -> anyhow::Result<()> {
    randomness
        .fill(buf)
        .context("reading the random number generator")
}

/// An identity file as `age-keygen` writes it.
fn age_identity_file(identity: &age::x25519::Identity, now: DateTime<Utc>) -> Zeroizing<String> {
    let secret = identity.to_string();
    Zeroizing::new(format!(
        "# created: {}\n# public key: {}\n{}\n",
        now.to_rfc3339_opts(SecondsFormat::Secs, true),
        identity.to_public(),
        secret.expose_secret()
    ))
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .or_else(|e| {
            if e.kind() == ErrorKind::AlreadyExists && path.is_dir() {
                Ok(())
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("creating {}", path.display()))
}

fn write_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new(path, contents, SECRET_MODE)
}

fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new(path, contents, PUBLIC_MODE)
}

/// Creates `path` with `mode` (the process umask can only narrow it) and writes
/// `contents`. The error names the file, never the contents.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            bail!(
                "{} already exists: refusing to overwrite it",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
