//! The gateway's own key material, loaded once at start-up.
//!
//! Every value here is a secret: the types print `[redacted]` in `Debug`, and a
//! loading error names the configuration key and the file, never the contents.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::EncodingKey;
use secrecy::{ExposeSecret as _, SecretBox, SecretString};

use crate::config::{Config, ConfigError};
use crate::randomness::Randomness;

/// The pseudonymization master secret: every linkage, partner and study key is
/// derived from it with `blake3::derive_key`.
pub struct MasterSecret(SecretBox<[u8; 32]>);

impl MasterSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// Reads a master secret file (64 hex digits), or creates one with fresh
    /// bytes from `randomness` (mode 0600) if `path` does not exist.
    pub fn load_or_create(path: &Path, randomness: &dyn Randomness) -> std::io::Result<Self> {
        use std::io::Write as _;
        let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not 64 hex digits");
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| invalid())?;
                Ok(Self::from_bytes(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                randomness.fill(&mut bytes).map_err(std::io::Error::other)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path)?;
                writeln!(file, "{}", hex::encode(bytes))?;
                file.sync_all()?;
                Ok(Self::from_bytes(bytes))
            }
            Err(e) => Err(e),
        }
    }

    /// A value that identifies this secret without revealing it, stored in the
    /// database so that the gateway refuses to run against data made under a
    /// different master secret.
    pub fn key_check(&self) -> String {
        let key = blake3::derive_key("crosswalk 2026 master key check v1", self.0.expose_secret());
        hex::encode(&key[..16])
    }

    /// Derives a purpose key. `context` must be a constant, versioned string.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, self.0.expose_secret())
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret([redacted])")
    }
}

/// All the gateway's keys.
pub struct GatewayKeys {
    pub master: MasterSecret,
    /// Unseals identifiers at rest.
    pub vault: age::x25519::Identity,
    /// Signs what the gateway asserts (audit checkpoints, export manifests).
    pub signing: EncodingKey,
}

impl fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayKeys([redacted])")
    }
}

impl GatewayKeys {
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let paths = &config.keys;
        let master = read_secret(config, "keys.master_secret", &paths.master_secret)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(master.expose_secret().trim(), &mut bytes).map_err(|_| {
            ConfigError::new(
                &config.source,
                "keys.master_secret",
                "the file must hold 64 hex digits (32 bytes)",
            )
        })?;
        let master = MasterSecret::from_bytes(bytes);

        let vault_text = read_secret(config, "keys.vault_identity", &paths.vault_identity)?;
        let vault = vault_text
            .expose_secret()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .and_then(|l| l.parse::<age::x25519::Identity>().ok())
            .ok_or_else(|| {
                ConfigError::new(
                    &config.source,
                    "keys.vault_identity",
                    "the file holds no age X25519 identity (AGE-SECRET-KEY-1...)",
                )
            })?;

        let signing_pem = read_secret(config, "keys.signing_key", &paths.signing_key)?;
        let signing =
            EncodingKey::from_ed_pem(signing_pem.expose_secret().as_bytes()).map_err(|_| {
                ConfigError::new(
                    &config.source,
                    "keys.signing_key",
                    "the file is not an Ed25519 private key in PKCS#8 PEM",
                )
            })?;
        Ok(Self {
            master,
            vault,
            signing,
        })
    }
}

/// Reads a secret file, warning (without failing) when others can read it.
fn read_secret(config: &Config, key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let full: PathBuf = config.key_path(path);
    let text = std::fs::read_to_string(&full).map_err(|e| {
        ConfigError::new(
            &config.source,
            key,
            format!("cannot read {}: {e}", full.display()),
        )
    })?;
    warn_if_exposed(key, &full);
    Ok(SecretString::from(text))
}

#[cfg(unix)]
fn warn_if_exposed(key: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(setting = key, path = %path.display(),
            "secret file is readable by group or others; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_key: &str, _path: &Path) {}
