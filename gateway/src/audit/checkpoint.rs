//! Signed checkpoints: the chain head `(seq, hash)` at a time, signed with the
//! gateway's Ed25519 key, so that a verifier holding only the public key and a
//! checkpoint detects a log cut short or rewritten before it.
//!
//! # Format
//! A checkpoint is a compact JWS (a JWT), `alg` `EdDSA`, `kid` the RFC 7638
//! thumbprint of the gateway's public key, with the claims
//! `{"seq": 1234, "hash": "<64 hex>", "at": "2026-11-23T16:10:58.123456Z"}`:
//! any JWT library verifies it with the gateway's public key, which is published
//! at `GET /.well-known/crosswalk-signing-key` and, for a key set made by
//! `crosswalk keys generate`, in `gateway/signing.pub.pem`. `hash` is the hash of
//! entry `seq` (32 zero bytes when the log is empty).
//!
//! # Where they go
//! Each checkpoint is stored in `audit_checkpoints` and appended as one JSON line
//! (`{"seq", "hash", "at", "jws"}`; only `jws` is trusted) to the witness file
//! `audit.checkpoint_file` (`sync_data` after each line, and the directory
//! synced when the file is new), which an operator ships somewhere a database
//! administrator cannot write; [`super::witness`] can also send each line to an
//! outside witness. A serving gateway makes one every
//! `audit.checkpoint_interval_secs` (10 s) and at graceful shutdown when the
//! head moved since the last one; `crosswalk audit checkpoint` makes a fresh
//! one on demand and prints its line.
//!
//! Why 10 s: entries after the latest checkpoint can be cut off with the head
//! rewound to match, and only the checkpoints see that when the cut also
//! deleted the rows those entries wrote (`audit verify` finds a cut that left
//! them, see [`super::crosscheck`]). An idle gateway signs nothing, and one
//! that checks every 10 s reads two rows to find nothing moved.
//!
//! # Why a checkpoint is not a chain entry
//! A checkpoint is a statement *about* the chain, and its integrity comes from
//! its signature, not from the chain. Were it an entry, it would move the head it
//! had just signed (so no checkpoint would ever sign the head as it stands), and
//! an idle gateway would grow its log by one entry per interval forever. Keeping
//! them apart also lets several replicas sign the same head without writing to
//! the chain at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::store::audit::{self as repo, StoredCheckpoint};
use crate::store::{Store, StoreError};

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (SEQUENCE,
/// `AlgorithmIdentifier` id-Ed25519, BIT STRING); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a checkpoint could not be made, read or trusted. Never quotes key
/// material or the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("not a compact JWS signed with EdDSA")]
    Malformed,
    #[error("its signature does not verify under the gateway public key")]
    BadSignature,
    #[error("its claims are not {{seq, hash, at}} as a checkpoint has them")]
    BadClaims,
    #[error("signing failed")]
    Signing,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("witness file {}: {source}", path.display())]
    Witness {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for CheckpointError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// The gateway's Ed25519 public key: what verifies checkpoints (and, later,
/// export manifests).
#[derive(Clone)]
pub struct GatewayPublicKey {
    raw: [u8; 32],
    decoding: DecodingKey,
}

impl std::fmt::Debug for GatewayPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayPublicKey({})", self.kid())
    }
}

impl GatewayPublicKey {
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self {
            raw,
            decoding: DecodingKey::from_ed_der(&raw),
        }
    }

    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) holding an Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<Self, &'static str> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| "is not a PEM public key (-----BEGIN PUBLIC KEY-----)")?;
        let der = spki.as_ref();
        if der.len() != 44 || der[..12] != ED25519_SPKI_PREFIX {
            return Err("is not an Ed25519 public key");
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&der[12..]);
        Ok(Self::from_raw(raw))
    }

    /// The SPKI PEM, as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            data_encoding::BASE64.encode(&der)
        )
    }

    /// The RFC 7638 JWK thumbprint (SHA-256 of the canonical JWK, base64url):
    /// the `kid` of every checkpoint, so a verifier can tell which key signed.
    pub fn kid(&self) -> String {
        use sha2::Digest as _;
        let jwk = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            data_encoding::BASE64URL_NOPAD.encode(&self.raw)
        );
        data_encoding::BASE64URL_NOPAD.encode(&sha2::Sha256::digest(jwk.as_bytes()))
    }

    /// The public half of the configured `keys.signing_key`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(CheckpointSigner::load(config)?.public)
    }
}

/// Signs checkpoints with the gateway's key. One per process.
pub struct CheckpointSigner {
    key: EncodingKey,
    public: GatewayPublicKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Reads `keys.signing_key` (the same file [`crate::secrets::GatewayKeys`]
    /// loads). The public key is derived from the private one, so the two cannot
    /// disagree.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let path = config.key_path(&config.keys.signing_key);
        let pem = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                &config.source,
                "keys.signing_key",
                format!("cannot read {}: {e}", path.display()),
            )
        })?);
        Self::from_pkcs8_pem(&pem)
            .map_err(|problem| ConfigError::new(&config.source, "keys.signing_key", problem))
    }

    /// A signer for an Ed25519 private key in PKCS#8 PEM.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, &'static str> {
        const NOT_ED25519: &str = "the file is not an Ed25519 private key in PKCS#8 PEM";
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| NOT_ED25519)?;
        let pair = rcgen::KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_ED25519)
            .map_err(|_| NOT_ED25519)?;
        let raw = <[u8; 32]>::try_from(pair.public_key_raw()).map_err(|_| NOT_ED25519)?;
        Ok(Self {
            key,
            public: GatewayPublicKey::from_raw(raw),
        })
    }

    pub fn public_key(&self) -> &GatewayPublicKey {
        &self.public
    }

    /// Signs any claims as a compact JWS (`EdDSA`, `kid` the key's thumbprint):
    /// what else the gateway asserts, such as export manifests.
    pub fn sign_claims<T: Serialize>(&self, claims: &T) -> Result<String, CheckpointError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.public.kid());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|_| CheckpointError::Signing)
    }

    /// Signs the head `(seq, hash)` as of `at`.
    pub fn sign(
        &self,
        seq: i64,
        hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<Checkpoint, CheckpointError> {
        let at = truncate_to_micros(at);
        let claims = Claims {
            seq,
            hash: hex::encode(hash),
            at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.public.kid());
        let jws = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|_| CheckpointError::Signing)?;
        Ok(Checkpoint { seq, hash, at, jws })
    }
}

/// The signed claims.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    seq: i64,
    hash: String,
    at: String,
}

/// A checkpoint: what it signs, and the JWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: [u8; 32],
    pub at: DateTime<Utc>,
    pub jws: String,
}

impl Checkpoint {
    /// Verifies a compact JWS under `key` and reads its claims. This is the only
    /// way to get a `Checkpoint` from text: nothing unsigned is ever trusted.
    pub fn verify(jws: &str, key: &GatewayPublicKey) -> Result<Self, CheckpointError> {
        let header = jsonwebtoken::decode_header(jws).map_err(|_| CheckpointError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(CheckpointError::Malformed);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<Claims>(jws, &key.decoding, &validation).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey => CheckpointError::BadSignature,
                jsonwebtoken::errors::ErrorKind::Json(_) => CheckpointError::BadClaims,
                _ => CheckpointError::Malformed,
            })?;
        let claims = data.claims;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&claims.hash, &mut hash).map_err(|_| CheckpointError::BadClaims)?;
        let at = DateTime::parse_from_rfc3339(&claims.at)
            .map_err(|_| CheckpointError::BadClaims)?
            .with_timezone(&Utc);
        if claims.seq < 0 {
            return Err(CheckpointError::BadClaims);
        }
        Ok(Self {
            seq: claims.seq,
            hash,
            at,
            jws: jws.to_owned(),
        })
    }

    /// The checkpoint's line in a witness file (and what `crosswalk audit
    /// checkpoint` prints): readable fields for people, and the JWS that is the
    /// only part a verifier trusts.
    pub fn witness_line(&self) -> String {
        serde_json::json!({
            "seq": self.seq,
            "hash": hex::encode(self.hash),
            "at": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "jws": self.jws,
        })
        .to_string()
    }

    /// The JWS in one line of a witness file: a JSON object's `jws`, or a bare
    /// compact JWS. `None` for a blank line.
    pub fn jws_of_witness_line(line: &str) -> Result<Option<String>, CheckpointError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        if line.starts_with('{') {
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|_| CheckpointError::Malformed)?;
            return value
                .get("jws")
                .and_then(serde_json::Value::as_str)
                .map(|jws| Some(jws.to_owned()))
                .ok_or(CheckpointError::Malformed);
        }
        Ok(Some(line.to_owned()))
    }

    /// A checkpoint as stored in the database (its JWS not verified: for
    /// sending on, never for trusting).
    pub fn from_stored(stored: StoredCheckpoint) -> Self {
        Self {
            seq: stored.seq,
            hash: stored.hash,
            at: DateTime::from_timestamp_micros(stored.at).unwrap_or_default(),
            jws: stored.jws,
        }
    }

    fn to_stored(&self) -> StoredCheckpoint {
        StoredCheckpoint {
            seq: self.seq,
            hash: self.hash,
            at: super::micros(self.at),
            jws: self.jws.clone(),
        }
    }
}

/// Entries are stamped in microseconds; so are checkpoints, so that the time in
/// the JWS and the one in the table agree exactly.
fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// When to make a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always a fresh one (`crosswalk audit checkpoint`).
    Always,
    /// Only if the head moved since the latest stored checkpoint (timer,
    /// shutdown): an idle gateway does not grow its witness file.
    IfMoved,
}

/// Makes, stores and witnesses checkpoints. Shared by the timer, shutdown and
/// the CLI.
pub struct Checkpointer {
    store: Store,
    signer: Arc<CheckpointSigner>,
    clock: Arc<dyn Clock>,
    witness: PathBuf,
    /// One witness append at a time, so lines never interleave.
    witness_lock: tokio::sync::Mutex<()>,
    /// Told of every checkpoint stored, so that outside witnesses get it at
    /// once ([`super::witness`]).
    made: Option<tokio::sync::watch::Sender<()>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("witness", &self.witness)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    pub fn new(
        store: Store,
        signer: Arc<CheckpointSigner>,
        clock: Arc<dyn Clock>,
        witness: PathBuf,
    ) -> Self {
        Self {
            store,
            signer,
            clock,
            witness,
            witness_lock: tokio::sync::Mutex::new(()),
            made: None,
        }
    }

    /// Tells `made` of every checkpoint this checkpointer stores.
    #[must_use]
    pub fn notifying(mut self, made: tokio::sync::watch::Sender<()>) -> Self {
        self.made = Some(made);
        self
    }

    pub fn public_key(&self) -> &GatewayPublicKey {
        self.signer.public_key()
    }

    pub fn witness_path(&self) -> &Path {
        &self.witness
    }

    /// Signs the committed head, stores the checkpoint and appends it to the
    /// witness file. `None` when `when` is [`When::IfMoved`] and nothing moved
    /// (or the log is still empty).
    /// The database row commits before the witness line is written: a witness
    /// line always names a checkpoint the database also has.
    pub async fn checkpoint(&self, when: When) -> Result<Option<Checkpoint>, CheckpointError> {
        // The timer asks every few seconds: find "nothing moved" in a read
        // transaction, without taking SQLite's write lock.
        if when == When::IfMoved {
            let mut read = self.store.begin_read().await?;
            let (seq, hash) = repo::head(&mut read).await?;
            let latest = repo::latest_checkpoint(&mut read).await?;
            read.rollback().await?;
            if seq == 0 || latest.is_some_and(|c| c.seq == seq && c.hash == hash) {
                return Ok(None);
            }
        }
        let mut tx = self.store.begin().await?;
        let (seq, hash) = repo::head(&mut tx).await?;
        if when == When::IfMoved {
            let latest = repo::latest_checkpoint(&mut tx).await?;
            let unchanged = latest.is_some_and(|c| c.seq == seq && c.hash == hash);
            if unchanged || seq == 0 {
                return Ok(None);
            }
        }
        let checkpoint = self.signer.sign(seq, hash, self.clock.now())?;
        repo::insert_checkpoint(&mut tx, &checkpoint.to_stored()).await?;
        tx.commit().await?;
        // The file first, then the outside witnesses: a line an outside
        // witness holds is then always in the file too (telling them first let
        // one receive a line the file did not have yet). They are told even if
        // the append failed: the checkpoint is stored, and theirs is the copy
        // that survives the loss of this machine.
        let appended = self.append_witness(&checkpoint).await;
        if let Some(made) = &self.made {
            made.send_replace(());
        }
        appended?;
        tracing::info!(seq, "audit checkpoint signed");
        Ok(Some(checkpoint))
    }

    async fn append_witness(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let _one_at_a_time = self.witness_lock.lock().await;
        let error = |source| CheckpointError::Witness {
            path: self.witness.clone(),
            source,
        };
        let dir = self.witness.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            tokio::fs::create_dir_all(dir).await.map_err(error)?;
        }
        let new = !tokio::fs::try_exists(&self.witness).await.unwrap_or(false);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.witness)
            .await
            .map_err(error)?;
        let mut line = checkpoint.witness_line();
        line.push('\n');
        file.write_all(line.as_bytes()).await.map_err(error)?;
        file.sync_data().await.map_err(error)?;
        if new {
            // A new file's name is in its directory: sync that too, or a crash
            // could lose the file with its first line.
            let dir = dir.unwrap_or_else(|| Path::new("."));
            tokio::fs::File::open(dir)
                .await
                .map_err(error)?
                .sync_all()
                .await
                .map_err(error)?;
        }
        Ok(())
    }

    /// Makes a checkpoint every `interval` while the task runs (if the head
    /// moved). Failures are logged and retried at the next tick.
    pub fn spawn_timer(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; the first checkpoint waits an interval.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = self.checkpoint(When::IfMoved).await {
                    tracing::error!(error = %e, "audit checkpoint failed; retrying at the next interval");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn example_signer() -> CheckpointSigner {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/gateway/signing.key.pem");
        CheckpointSigner::from_pkcs8_pem(&std::fs::read_to_string(path).expect("example key"))
            .expect("Ed25519 key")
    }

    fn other_signer() -> CheckpointSigner {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/partners/admin.key.pem");
        CheckpointSigner::from_pkcs8_pem(&std::fs::read_to_string(path).expect("partner key"))
            .expect("Ed25519 key")
    }

    fn at() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 123_456_789)
            .single()
            .expect("time")
    }

    #[test]
    fn a_checkpoint_verifies_under_the_published_key() {
        let signer = example_signer();
        let made = signer.sign(42, [7; 32], at()).expect("sign");
        let published = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/gateway/signing.pub.pem"),
        )
        .expect("public key");
        let key = GatewayPublicKey::from_pem(&published).expect("SPKI PEM");
        assert_eq!(
            key.to_pem().trim(),
            published.trim(),
            "same PEM as keys generate"
        );

        let read = Checkpoint::verify(&made.jws, &key).expect("verifies");

        assert_eq!(read, made);
        assert_eq!(read.at.timestamp_subsec_micros(), 123_456, "microseconds");
        let header = jsonwebtoken::decode_header(&made.jws).expect("header");
        assert_eq!(header.kid.as_deref(), Some(key.kid().as_str()));
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_refused() {
        let forged = other_signer().sign(42, [7; 32], at()).expect("sign");
        let gateway = example_signer();

        let result = Checkpoint::verify(&forged.jws, gateway.public_key());

        assert!(
            matches!(result, Err(CheckpointError::BadSignature)),
            "{result:?}"
        );
    }

    #[test]
    fn an_edited_claim_breaks_the_signature() {
        let signer = example_signer();
        let made = signer.sign(42, [7; 32], at()).expect("sign");
        let mut parts: Vec<String> = made.jws.split('.').map(str::to_owned).collect();
        let claims = r#"{"seq":43,"hash":"0707070707070707070707070707070707070707070707070707070707070707","at":"2027-01-15T08:00:00.123456Z"}"#;
        parts[1] = data_encoding::BASE64URL_NOPAD.encode(claims.as_bytes());

        let result = Checkpoint::verify(&parts.join("."), signer.public_key());

        assert!(
            matches!(result, Err(CheckpointError::BadSignature)),
            "{result:?}"
        );
    }

    #[test]
    fn other_algorithms_and_garbage_are_refused() {
        let signer = example_signer();
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                seq: 1,
                hash: hex::encode([0; 32]),
                at: "2027-01-15T08:00:00Z".into(),
            },
            &EncodingKey::from_secret(signer.public_key().to_pem().as_bytes()),
        )
        .expect("sign");
        for bad in [hs256.as_str(), "", "a.b.c", "not a jws"] {
            assert!(
                Checkpoint::verify(bad, signer.public_key()).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn witness_lines_carry_the_jws() {
        let made = example_signer().sign(3, [1; 32], at()).expect("sign");
        let line = made.witness_line();
        assert!(!line.contains('\n'));
        assert_eq!(
            Checkpoint::jws_of_witness_line(&line).expect("line"),
            Some(made.jws.clone())
        );
        assert_eq!(
            Checkpoint::jws_of_witness_line(&made.jws).expect("bare"),
            Some(made.jws)
        );
        assert_eq!(Checkpoint::jws_of_witness_line("  ").expect("blank"), None);
        assert!(Checkpoint::jws_of_witness_line("{\"seq\":1}").is_err());
    }
}
