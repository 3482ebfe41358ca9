use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::*;
use crate::config::Config;

/// Every file holding secret material, relative to the key set.
fn secret_files() -> Vec<String> {
    let mut files: Vec<String> = [
        "gateway/master.key",
        "gateway/vault.age",
        "gateway/signing.key.pem",
        "tls/ca.key.pem",
        "tls/server.key.pem",
        "partners/evaluator.age",
    ]
    .map(str::to_owned)
    .into();
    for partner in EXAMPLE_PARTNERS {
        files.push(format!("partners/{}.key.pem", partner.id));
        files.push(format!("partners/{}.cert.key.pem", partner.id));
    }
    files
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).expect(file)
}

fn cert(dir: &Path, file: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join(file)).expect(file)
}

fn roots(dir: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(dir, "tls/ca.pem")).expect("CA certificate");
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn generated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    generate(&dir.path().join("set")).expect("generate");
    dir
}

#[test]
fn the_generated_configuration_loads_and_registers_every_partner() {
    let tmp = generated();
    let dir = tmp.path().join("set");
    let config = Config::load(&dir.join(CONFIG_FILE), std::iter::empty()).expect("loads");

    assert_eq!(config.partners.len(), EXAMPLE_PARTNERS.len());
    for partner in EXAMPLE_PARTNERS {
        let entry = &config.partners[partner.id];
        assert_eq!(entry.kind, partner.kind);
        assert_eq!(entry.name, partner.name);
        assert!(entry.active);
        assert_eq!(
            entry.public_key,
            read(&dir, &format!("partners/{}.pub.pem", partner.id)),
            "{}",
            partner.id
        );
        assert!(entry.cert_fingerprint.is_none(), "binding is opt-in");
    }

    let evaluator_identity = read(&dir, "partners/evaluator.age");
    let recipient = config.partners["evaluator"]
        .age_recipient
        .as_deref()
        .expect("the evaluator has a recipient");
    assert!(evaluator_identity.contains(&format!("# public key: {recipient}\n")));
    assert!(config.partners["pd"].age_recipient.is_none());

    for path in [
        &config.keys.master_secret,
        &config.keys.vault_identity,
        &config.keys.signing_key,
        &config.keys.tls_cert,
        &config.keys.tls_key,
        &config.keys.client_ca,
    ] {
        assert!(config.key_path(path).is_file(), "{}", path.display());
    }
}

#[test]
fn the_commented_fingerprint_matches_the_client_certificate() {
    let tmp = generated();
    let dir = tmp.path().join("set");
    let text = read(&dir, CONFIG_FILE);
    for partner in EXAMPLE_PARTNERS {
        let der = cert(&dir, &format!("partners/{}.cert.pem", partner.id));
        let line = format!(
            "# cert_fingerprint = \"{}\"",
            crate::config::format_fingerprint(&der)
        );
        assert!(text.contains(&line), "{}", partner.id);
    }
    // Uncommented, it is accepted.
    let bound = text.replacen("# cert_fingerprint", "cert_fingerprint", 1);
    Config::from_toml(&bound, &dir.join(CONFIG_FILE), std::iter::empty()).expect("loads");
}

#[test]
fn secret_files_are_private_and_formats_are_as_documented() {
    let tmp = generated();
    let dir = tmp.path().join("set");
    for file in secret_files() {
        let mode = std::fs::metadata(dir.join(&file))
            .expect(&file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let master = read(&dir, "gateway/master.key");
    assert_eq!(master.len(), 65);
    assert!(master.ends_with('\n'));
    assert!(
        master
            .trim_end()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );

    for identity_file in ["gateway/vault.age", "partners/evaluator.age"] {
        let text = read(&dir, identity_file);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{identity_file}");
        assert!(lines[0].starts_with("# created: "));
        let recipient = lines[1]
            .strip_prefix("# public key: ")
            .expect("public key line");
        let identity: age::x25519::Identity = lines[2].parse().expect("identity");
        assert_eq!(identity.to_public().to_string(), recipient);
    }
    let vault: age::x25519::Identity = read(&dir, "gateway/vault.age")
        .lines()
        .nth(2)
        .expect("identity line")
        .parse()
        .expect("identity");
    assert_eq!(
        read(&dir, "gateway/vault.recipient"),
        format!("{}\n", vault.to_public())
    );

    for key in secret_files()
        .iter()
        .filter(|f| Path::new(f).extension().is_some_and(|e| e == "pem"))
    {
        assert!(
            read(&dir, key).starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{key}"
        );
    }
    let signing_pem = read(&dir, "gateway/signing.key.pem");
    let signing_der = PrivateKeyDer::from_pem_slice(signing_pem.as_bytes()).expect("PEM");
    assert_eq!(
        signing_der.secret_der().len(),
        48,
        "Ed25519 keys are PKCS#8 v1, which OpenSSL 3.0 reads"
    );
    let signing = rcgen::KeyPair::from_pem(&signing_pem).expect("PKCS#8");
    assert_eq!(signing.algorithm(), &rcgen::PKCS_ED25519);
    assert_eq!(
        signing.public_key_pem(),
        read(&dir, "gateway/signing.pub.pem")
    );
    let server_key = rcgen::KeyPair::from_pem(&read(&dir, "tls/server.key.pem")).expect("PKCS#8");
    assert_eq!(server_key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
}

#[test]
fn certificates_chain_to_the_ca_for_their_purpose() {
    let tmp = generated();
    let dir = tmp.path().join("set");
    let now = UnixTime::now();

    // The server certificate: a working rustls server configuration, and valid
    // for every local name a client uses.
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&dir), provider())
            .build()
            .expect("client verifier");
    let server_key = PrivateKeyDer::from_pem_file(dir.join("tls/server.key.pem")).expect("key");
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(client_verifier.clone())
        .with_single_cert(vec![cert(&dir, "tls/server.pem")], server_key)
        .expect("the server certificate and key go together");

    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(&dir), provider())
            .build()
            .expect("server verifier");
    for name in ["localhost", "127.0.0.1", "::1"] {
        server_verifier
            .verify_server_cert(
                &cert(&dir, "tls/server.pem"),
                &[],
                &ServerName::try_from(name).expect("name"),
                &[],
                now,
            )
            .unwrap_or_else(|e| panic!("server certificate for {name}: {e}"));
    }

    // Each partner's client certificate: accepted for client auth only.
    for partner in EXAMPLE_PARTNERS {
        let client = cert(&dir, &format!("partners/{}.cert.pem", partner.id));
        client_verifier
            .verify_client_cert(&client, &[], now)
            .unwrap_or_else(|e| panic!("{}: {e}", partner.id));
        let localhost = ServerName::try_from("localhost").expect("name");
        assert!(
            server_verifier
                .verify_server_cert(&client, &[], &localhost, &[], now)
                .is_err(),
            "a client certificate must not serve"
        );
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![client],
                PrivateKeyDer::from_pem_file(
                    dir.join(format!("partners/{}.cert.key.pem", partner.id)),
                )
                .expect("key"),
            )
            .expect("the client certificate and key go together");
    }
}

#[test]
fn a_partner_token_verifies_with_the_registered_key() {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    let tmp = generated();
    let dir = tmp.path().join("set");
    let config = Config::load(&dir.join(CONFIG_FILE), std::iter::empty()).expect("loads");

    let key = EncodingKey::from_ed_pem(read(&dir, "partners/pd.key.pem").as_bytes())
        .expect("private key");
    let now = crate::clock::SystemClock.now().timestamp();
    let claims = serde_json::json!({
        "sub": "pd",
        "aud": "crosswalk",
        "iat": now,
        "exp": now + 300,
    });
    let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).expect("sign");

    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["crosswalk"]);
    let registered =
        DecodingKey::from_ed_pem(config.partners["pd"].public_key.as_bytes()).expect("public key");
    let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &registered, &validation)
        .expect("verifies");
    assert_eq!(decoded.claims["sub"], "pd");

    let other = DecodingKey::from_ed_pem(config.partners["cbo-north"].public_key.as_bytes())
        .expect("public key");
    assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &other, &validation).is_err());
}

#[test]
fn a_second_generate_into_the_same_directory_is_refused() {
    let tmp = generated();
    let dir = tmp.path().join("set");
    let before = read(&dir, "gateway/master.key");
    let e = generate(&dir).expect_err("refused");
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(read(&dir, "gateway/master.key"), before);

    // Without the configuration, the existing key files still are not overwritten.
    std::fs::remove_file(dir.join(CONFIG_FILE)).expect("remove");
    let e = generate(&dir).expect_err("refused");
    assert!(
        format!("{e:#}").contains("master.key already exists"),
        "{e:#}"
    );
    assert_eq!(read(&dir, "gateway/master.key"), before);
}

#[test]
fn time_comes_from_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = DateTime::parse_from_rfc3339("2030-02-03T04:05:06Z")
        .expect("time")
        .with_timezone(&Utc);
    generate_with(
        dir.path(),
        &crate::clock::FixedClock(pinned),
        &crate::randomness::OsRandomness,
    )
    .expect("generate");
    assert!(read(dir.path(), "gateway/vault.age").starts_with("# created: 2030-02-03T04:05:06Z\n"));
}
