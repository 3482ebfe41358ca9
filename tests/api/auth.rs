//! Partner authentication: what gets in, what is refused, and that a refused
//! token is never written to the log.

use serde_json::json;

use crate::backend_tests;
use crate::helpers::{
    AppOptions, Backend, TestApp, assert_problem, claims_for, client, example_keys, get_with,
    issue_token, now, sign_as, spawn_app, spawn_app_with,
};

backend_tests!(
    a_minted_token_identifies_its_partner,
    refused_tokens_get_401_and_stay_out_of_the_log,
    with_replay_protection_a_token_is_used_once,
);

async fn a_minted_token_identifies_its_partner(backend: Backend) {
    let app = spawn_app(backend).await;
    for (partner, kind) in [
        ("pd", "police"),
        ("cbo-north", "cbo"),
        ("county-health", "health"),
    ] {
        let token = issue_token(partner);

        let response = app.get("/v1/whoami", Some(&token)).await;

        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body, json!({ "partner": partner, "kind": kind }));
    }
}

/// Each case: a name, the token (or none), and the reason the log must give.
fn refused_tokens() -> Vec<(&'static str, Option<String>, &'static str)> {
    let now = now();
    let pd_public_key = std::fs::read(example_keys().join("partners/pd.pub.pem")).expect("pd key");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims_for("pd"),
        &jsonwebtoken::EncodingKey::from_secret(&pd_public_key),
    )
    .expect("HS256");
    let alg_none = {
        use base64::Engine as _;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(claims_for("pd").to_string().as_bytes())
        )
    };
    let tampered = {
        let token = sign_as("pd", &claims_for("pd"));
        let (rest, signature) = token.rsplit_once('.').expect("three parts");
        let mut signature = signature.to_owned().into_bytes();
        signature[5] = if signature[5] == b'A' { b'B' } else { b'A' };
        format!("{rest}.{}", String::from_utf8(signature).expect("ascii"))
    };
    let critical = {
        let pem = std::fs::read(example_keys().join("partners/pd.key.pem")).expect("pd key");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.crit = Some(vec!["foo".to_owned()]);
        jsonwebtoken::encode(
            &header,
            &claims_for("pd"),
            &jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("Ed25519 PEM"),
        )
        .expect("sign")
    };
    let mut expired = claims_for("pd");
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut wrong_audience = claims_for("pd");
    wrong_audience["aud"] = json!("someone-else");
    let mut too_long = claims_for("pd");
    too_long["exp"] = json!(now + 86_400);
    let mut no_exp = claims_for("pd");
    no_exp.as_object_mut().expect("object").remove("exp");
    vec![
        ("no token", None, "missing_token"),
        ("expired", Some(sign_as("pd", &expired)), "expired"),
        (
            "wrong audience",
            Some(sign_as("pd", &wrong_audience)),
            "wrong_audience",
        ),
        ("alg none", Some(alg_none), "malformed"),
        (
            "HS256 keyed with the public key",
            Some(hs256),
            "unsupported_algorithm",
        ),
        (
            "unknown partner",
            Some(sign_as("pd", &claims_for("nobody"))),
            "unknown_partner",
        ),
        (
            "inactive partner",
            Some(sign_as("cbo-south", &claims_for("cbo-south"))),
            "inactive_partner",
        ),
        ("tampered signature", Some(tampered), "bad_signature"),
        (
            "a critical header extension (RFC 7515 §4.1.11)",
            Some(critical),
            "critical_extension",
        ),
        (
            "signed by another partner's key",
            Some(sign_as("cbo-north", &claims_for("pd"))),
            "bad_signature",
        ),
        (
            "lifetime above the maximum",
            Some(sign_as("pd", &too_long)),
            "lifetime_too_long",
        ),
        ("no exp", Some(sign_as("pd", &no_exp)), "missing_claim"),
        (
            "bound partner without its certificate",
            Some(sign_as("evaluator", &claims_for("evaluator"))),
            "certificate_required",
        ),
    ]
}

async fn refused_tokens_get_401_and_stay_out_of_the_log(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![
                (
                    "CROSSWALK_PARTNERS__CBO_SOUTH__ACTIVE".into(),
                    "false".into(),
                ),
                (
                    "CROSSWALK_PARTNERS__EVALUATOR__CERT_FINGERPRINT".into(),
                    fingerprint_of("evaluator"),
                ),
            ],
        },
    )
    .await;

    for (case, token, reason) in refused_tokens() {
        let response = app.get("/v1/whoami", token.as_deref()).await;

        assert!(
            response.headers().contains_key("www-authenticate"),
            "{case}: challenge"
        );
        let problem = assert_problem(response, 401).await;
        assert!(problem["detail"].is_string(), "{case}: {problem}");
        let logs = app.wait_for_log(&format!("reason=\"{reason}\"")).await;
        assert!(
            logs.contains(&format!("reason=\"{reason}\"")),
            "{case}: logged as {reason}:\n{logs}"
        );
        if let Some(token) = &token {
            let signature = token.rsplit('.').next().expect("parts");
            assert!(
                !logs.contains(token.as_str()),
                "{case}: the token is in the log"
            );
            if signature.len() > 8 {
                assert!(
                    !logs.contains(signature),
                    "{case}: the signature is in the log"
                );
            }
        }
    }
    assert_bound_partner_needs_its_own_certificate(&app).await;
}

/// The certificate-bound evaluator gets in only over a connection presenting its
/// own client certificate: not without one, not with another partner's.
async fn assert_bound_partner_needs_its_own_certificate(app: &TestApp) {
    let token = sign_as("evaluator", &claims_for("evaluator"));
    let with_own = get_with(
        &client(Some("evaluator")),
        &app.url("/v1/whoami"),
        Some(&token),
    )
    .await;
    assert_eq!(with_own.status(), 200);
    let with_other = get_with(&client(Some("pd")), &app.url("/v1/whoami"), Some(&token)).await;
    assert_problem(with_other, 401).await;
    // Partners that are not bound still get in with or without a certificate.
    let pd = get_with(
        &client(Some("pd")),
        &app.url("/v1/whoami"),
        Some(&issue_token("pd")),
    )
    .await;
    assert_eq!(pd.status(), 200);
}

fn fingerprint_of(partner: &str) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let cert =
        CertificateDer::from_pem_file(example_keys().join(format!("partners/{partner}.cert.pem")))
            .expect("client cert");
    crosswalk::config::format_fingerprint(cert.as_ref())
}

/// `auth.replay_protection`: a token with a `jti` is accepted once; a token
/// without one is refused; a fresh token for the next request is fine.
async fn with_replay_protection_a_token_is_used_once(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![("CROSSWALK_AUTH__REPLAY_PROTECTION".into(), "true".into())],
        },
    )
    .await;
    let with_jti = |jti: &str| {
        let mut claims = claims_for("pd");
        claims["jti"] = json!(jti);
        sign_as("pd", &claims)
    };
    let once = with_jti("a-once-only-token");
    assert_eq!(app.get("/v1/whoami", Some(&once)).await.status(), 200);
    let replayed = assert_problem(app.get("/v1/whoami", Some(&once)).await, 401).await;
    assert!(
        replayed.to_string().contains("used before"),
        "says why: {replayed}"
    );
    let without = sign_as("pd", &claims_for("pd"));
    assert_problem(app.get("/v1/whoami", Some(&without)).await, 401).await;
    assert_eq!(
        app.get("/v1/whoami", Some(&with_jti("the-next-request")))
            .await
            .status(),
        200
    );
}
