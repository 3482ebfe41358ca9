//! Property-based fuzzing, on stable Rust, of the parsers that face the
//! network: partner tokens, referral bodies (single or as a batch line: the
//! same `referral::check`), consent bodies, list cursors and aggregate queries.
//! Each must never panic, and must either parse or say precisely which field is
//! wrong — without quoting what was sent (a value may be an identifier). The
//! normalizers (names, dates, phones, addresses) have their own properties in
//! `normalize/proptests.rs`; the Authorization header's in `http/auth.rs`.
//!
//! Bodies are generated two ways: arbitrary bytes and arbitrary JSON (which
//! mostly fail at the first field), and a valid referral with one field at a
//! time replaced by an arbitrary value (which reaches every check behind it).
//! Every generated string carries a marker, and no error may contain it.
//!
//! CI runs proptest's default 256 cases per property (a few seconds in all).
//! A longer run: `PROPTEST_CASES=20000 cargo test --release --lib edge_proptests`.

use chrono::{NaiveDate, TimeDelta, TimeZone as _, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::exchange::input::{self, Invalid};
use crate::exchange::referral::{self, CheckContext};
use crate::normalize::NormalizeOptions;

/// Put into every generated string: an error quoting input would show it.
const MARKER: &str = "Qz7marker";

fn marked_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,30}".prop_map(|s| format!("{MARKER}{s}")),
        Just(format!("0000-01-01T00:00:00Z{MARKER}")),
        Just(format!("{MARKER}\u{0}\u{202e}")),
        "[0-9 ()+-]{0,20}".prop_map(|s| format!("{s}{MARKER}")),
    ]
}

/// A scalar: mostly marked strings, some numbers, booleans, nulls, and
/// bare dates and times (which cannot carry the marker) whose parsing must
/// not panic whatever their range.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        6 => marked_string().prop_map(Value::from),
        2 => prop_oneof![
            Just(json!("0000-01-01T00:00:00Z")),
            Just(json!("+275760-09-13T00:00:00Z")),
            Just(json!("1899-12-31")),
            Just(json!("2026-02-30")),
        ],
    ]
}

/// Any JSON value, nested up to three levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = leaf();
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("given_name".to_owned()),
                    Just("dob".to_owned()),
                    Just("phone".to_owned()),
                    Just("street".to_owned()),
                    "[a-z_]{1,10}".prop_map(|s| s),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A referral every check accepts.
fn valid_referral() -> Value {
    json!({
        "cad_number": "CAD-2026-118822",
        "officer_id": "OFC-5120",
        "subject": {
            "given_name": "Lena",
            "surname": "Example",
            "dob": "1981-02-03",
            "sex": "F",
            "address": {"street": "77 Larkspur Way", "city": "Sacramento", "state": "CA", "zip": "95822"},
            "phone": "(916) 555-0144",
            "email": "l.example@example.net"
        },
        "contact_at": "2026-11-30T10:00:00Z",
        "district": "north",
        "arrested": false,
        "circumstances": "Met during a welfare check.",
        "resources": ["homelessness", "mental_health"],
        "follow_up_by": "cbo",
        "assign_to": "cbo-north"
    })
}

/// Every path of the valid referral (objects and array items), as pointers.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}/{key}");
                out.push(here.clone());
                pointers(child, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let here = format!("{at}/{i}");
                out.push(here.clone());
                pointers(child, &here, out);
            }
        }
        _ => {}
    }
}

fn with_config<T>(check: impl FnOnce(&CheckContext<'_>) -> T) -> T {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml");
    let config = crate::config::Config::load(&path, std::iter::empty()).expect("example config");
    let now = Utc
        .with_ymd_and_hms(2026, 12, 7, 12, 0, 0)
        .single()
        .expect("a time");
    let cx = CheckContext {
        config: &config,
        tolerance: crate::exchange::subject::Tolerance::RefuseRequest,
        normalize: NormalizeOptions::new(
            phonenumber::country::Id::US,
            NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date"),
        ),
        window: input::EventWindow {
            earliest: Utc
                .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
                .single()
                .expect("a time"),
            latest: now + TimeDelta::seconds(30),
        },
    };
    check(&cx)
}

/// An error names fields and never quotes what was sent.
fn assert_precise(invalid: &Invalid) -> Result<(), TestCaseError> {
    prop_assert!(!invalid.errors.is_empty(), "an error without a field");
    for error in &invalid.errors {
        prop_assert!(!error.field.is_empty(), "an error with no field name");
        prop_assert!(
            !error.problem.is_empty(),
            "{}: no problem given",
            error.field
        );
        prop_assert!(
            !error.problem.contains(MARKER) && !error.field.contains(MARKER),
            "{}: the error quotes the input: {}",
            error.field,
            error.problem
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_as_a_body(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let result = with_config(|cx| referral::check(&bytes, cx).map(|_| ()));
        if let Err(invalid) = result {
            assert_precise(&invalid)?;
        }
    }

    #[test]
    fn arbitrary_json_is_refused_precisely(value in json_value()) {
        let body = serde_json::to_vec(&value).expect("JSON");
        let result = with_config(|cx| referral::check(&body, cx).map(|_| ()));
        if let Err(invalid) = result {
            assert_precise(&invalid)?;
        }
    }

    /// One field of a valid referral replaced by anything: the check names
    /// a field (the replaced one or one inside it) or accepts the value.
    #[test]
    fn a_referral_with_any_one_field_replaced_is_checked_precisely(
        pick in any::<prop::sample::Index>(),
        replacement in prop_oneof![4 => leaf(), 1 => json_value()],
    ) {
        let mut body = valid_referral();
        let mut paths = Vec::new();
        pointers(&body, "", &mut paths);
        let path = paths[pick.index(paths.len())].clone();
        if let Some(slot) = body.pointer_mut(&path) {
            *slot = replacement;
        }
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let result = with_config(|cx| referral::check(&bytes, cx).map(|_| ()));
        if let Err(invalid) = result {
            assert_precise(&invalid)?;
        }
    }

    #[test]
    fn consent_bodies_are_read_or_refused_precisely(value in json_value()) {
        let body = serde_json::to_vec(&value).expect("JSON");
        if let Err(invalid) =
            input::parse_json::<crate::exchange::consent::ConsentRequest>(&body)
        {
            assert_precise(&invalid)?;
        }
    }

    /// Tokens: arbitrary text, and three dot-separated base64url segments of
    /// arbitrary JSON (so the header and claims parsers are reached). None is
    /// accepted (nothing here is signed by a registered key), none panics.
    #[test]
    fn arbitrary_tokens_are_refused(
        text in ".{0,200}",
        header in json_value(),
        claims in json_value(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        use base64::Engine as _;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let verifier = verifier();
        prop_assert!(verifier.verify(&text, None).is_err());
        let shaped = format!(
            "{}.{}.{}",
            encode(header.to_string().as_bytes()),
            encode(claims.to_string().as_bytes()),
            encode(&signature)
        );
        prop_assert!(verifier.verify(&shaped, None).is_err());
        let mut eddsa = header.clone();
        if let Value::Object(map) = &mut eddsa {
            map.insert("alg".to_owned(), json!("EdDSA"));
        } else {
            eddsa = json!({"alg": "EdDSA", "typ": "JWT"});
        }
        let shaped = format!(
            "{}.{}.{}",
            encode(eddsa.to_string().as_bytes()),
            encode(claims.to_string().as_bytes()),
            encode(&signature)
        );
        prop_assert!(verifier.verify(&shaped, None).is_err());
    }

    #[test]
    fn cursors_round_trip_or_are_refused(text in ".{0,160}") {
        if let Some(cursor) = crate::reads::Cursor::decode(&text) {
            prop_assert_eq!(crate::reads::Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }

    /// Aggregate queries: any parameters, any values; a refusal names one of
    /// the parameters.
    #[test]
    fn aggregate_queries_are_parsed_or_refused_naming_a_parameter(
        params in prop::collection::vec(
            (prop_oneof![Just("from"), Just("to"), Just("group_by"), Just("epsilon")], ".{0,24}"),
            0..6,
        ),
    ) {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = crate::config::AggregatesConfig::default();
        let now = Utc
            .with_ymd_and_hms(2026, 12, 7, 12, 0, 0)
            .single()
            .expect("a time");
        let program_start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date");
        match crate::aggregates::AggregateRequest::parse(&pairs, &config, program_start, now) {
            Ok(_) => {}
            Err(crate::aggregates::AggregateError::Invalid { parameter, problem }) => {
                prop_assert!(["from", "to", "group_by", "epsilon"].contains(&parameter));
                prop_assert!(!problem.contains(MARKER));
            }
            Err(other) => prop_assert!(false, "not a parameter problem: {other}"),
        }
    }
}

fn verifier() -> crate::auth::Verifier {
    use std::sync::Arc;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml");
    let config = crate::config::Config::load(&path, std::iter::empty()).expect("example config");
    let registry = Arc::new(crate::auth::Registry::from_config(&config).expect("registry"));
    let clock = crate::clock::FixedClock(
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0)
            .single()
            .expect("a time"),
    );
    crate::auth::Verifier::new(registry, &config, Arc::new(clock))
}

/// The base of the one-field-replaced property must itself pass every check,
/// or the property would only ever exercise the first refusal.
#[test]
fn the_base_referral_is_valid() {
    let bytes = serde_json::to_vec(&valid_referral()).expect("JSON");
    let result = with_config(|cx| referral::check(&bytes, cx).map(|_| ()));
    assert_eq!(result, Ok(()));
}
