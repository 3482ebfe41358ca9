use std::sync::LazyLock;

use chrono::NaiveDate;
use proptest::prelude::*;

use super::synth;
use super::*;
use crate::normalize::{Identity, IdentityInput, NormalizeOptions, normalize};
use crate::secrets::MasterSecret;

static KEYS: LazyLock<LinkageKeys> =
    LazyLock::new(|| LinkageKeys::derive(&MasterSecret::from_bytes([7; 32]), 1));

fn options() -> NormalizeOptions {
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
    NormalizeOptions::new(phonenumber::country::Id::US, today)
}

fn identity(input: &IdentityInput) -> Identity {
    normalize(input, &options()).expect("synthetic records normalize")
}

fn fp(input: &IdentityInput) -> Fingerprint {
    fingerprint(&identity(input), &KEYS)
}

fn person(given: &str, surname: &str, dob: &str) -> IdentityInput {
    IdentityInput {
        given_name: Some(given.to_owned()),
        surname: Some(surname.to_owned()),
        dob: Some(dob.to_owned()),
        street: Some("12 Elm St".to_owned()),
        city: Some("Sacramento".to_owned()),
        state: Some("CA".to_owned()),
        zip: Some("95814".to_owned()),
        phone: Some("(916) 555-0142".to_owned()),
        ..IdentityInput::default()
    }
}

fn shares_a_token(a: &Fingerprint, b: &Fingerprint) -> bool {
    a.tokens().iter().any(|t| b.tokens().contains(t))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The promise of several tokens: one wrong field leaves at least one equal.
    #[test]
    fn one_corrupted_field_leaves_an_equal_token(person_seed in any::<u64>(), error_seed in any::<u64>()) {
        let original = &synth::people(person_seed, 1)[0];
        let variant = synth::corrupt_one_field(original, error_seed);
        prop_assert_ne!(original, &variant);
        let (a, b) = (fp(original), fp(&variant));
        prop_assume!(b.is_linkable()); // a missing date of birth can leave too little
        prop_assert!(shares_a_token(&a, &b), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn compare_is_symmetric(seed in any::<u64>(), error_seed in any::<u64>()) {
        let people = synth::people(seed, 2);
        let variant = synth::corrupt_one_field(&people[0], error_seed);
        for (x, y) in [(&people[0], &variant), (&people[0], &people[1]), (&variant, &people[1])] {
            let (a, b) = (fp(x), fp(y));
            let (ab, ba) = (compare(&a, &b), compare(&b, &a));
            prop_assert_eq!(ab, ba);
            prop_assert!((0.0..=1.0).contains(&ab.score()));
            prop_assert_eq!(ab.is_match(), ab.score() >= 0.5);
        }
    }
}

#[test]
fn one_corrupted_field_almost_always_still_matches() {
    let people = synth::people(11, 400);
    let matched = people
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            let variant = synth::corrupt_one_field(p, *i as u64);
            compare(&fp(p), &fp(&variant)).is_match()
        })
        .count();
    // Measured 0.98+; a drop means the engine or the corruptor changed.
    assert!(matched >= 380, "{matched} of 400 matched");
}

#[test]
fn spellings_of_one_person_match_and_another_person_does_not() {
    let police = fp(&person("José", "Núñez-García", "03/07/1984"));
    let transposed_typo = fp(&person("Jsoe", "Nunez Garcia", "1984-07-03"));
    let other = fp(&person("Maria", "Okafor", "1990-11-02"));
    assert!(compare(&police, &transposed_typo).is_match());
    assert!(!compare(&police, &other).is_match());
    let bill = fp(&person("Bill", "Smith", "1970-01-02"));
    let william = fp(&person("William", "Smith", "1970-01-02"));
    assert_eq!(compare(&bill, &william).decision(), Decision::StrongToken);
    let swapped = fp(&person("Smith", "William", "1970-01-02"));
    assert_eq!(
        compare(&william, &swapped).decision(),
        Decision::StrongToken
    );
}

#[test]
fn twins_and_namesakes_do_not_match() {
    let mut twin_a = person("Emma", "Lopez", "2001-05-06");
    twin_a.sex = Some("F".to_owned());
    let mut twin_b = person("Olivia", "Lopez", "2001-05-06");
    twin_b.sex = Some("F".to_owned());
    assert!(!compare(&fp(&twin_a), &fp(&twin_b)).is_match());

    let father = person("Robert", "Young", "1961-09-14");
    let son = person("Robert", "Young", "1990-02-27");
    assert!(!compare(&fp(&father), &fp(&son)).is_match());
}

#[test]
fn a_record_without_a_date_of_birth_links_on_names_and_phone() {
    let with_dob = person("Maria", "Garcia", "1984-03-07");
    let without = IdentityInput {
        dob: None,
        ..with_dob.clone()
    };
    let m = compare(&fp(&with_dob), &fp(&without));
    assert_eq!(m.decision(), Decision::Corroborated);
    // But dates that differ are not "no date": a namesake parent does not link.
    let parent = person("Maria", "Garcia", "1961-10-30");
    assert!(!compare(&fp(&with_dob), &fp(&parent)).is_match());
}

#[test]
fn unlinkable_identities_never_match_even_themselves() {
    let name_only = IdentityInput {
        given_name: Some("Jose".to_owned()),
        surname: Some("Nunez".to_owned()),
        zip: Some("95814".to_owned()),
        ..IdentityInput::default()
    };
    let a = fp(&name_only);
    assert!(!a.is_linkable());
    assert!(a.lookup_keys().is_empty());
    assert!(a.index_keys().is_empty());
    assert!(!compare(&a, &a).is_match());
    assert_eq!(compare(&a, &a).decision(), Decision::NotComparable);

    let no_name = IdentityInput {
        given_name: None,
        surname: None,
        ..person("x", "x", "1984-03-07")
    };
    assert!(!fp(&no_name).is_linkable());
    assert!(fp(&person("Jose", "Nunez", "1984-03-07")).is_linkable());
}

#[test]
fn tokens_depend_on_the_key_version_and_the_master_secret() {
    let id = identity(&person("Ana", "Lee", "1999-12-31"));
    let v1 = fingerprint(&id, &KEYS);
    let v2 = fingerprint(
        &id,
        &LinkageKeys::derive(&MasterSecret::from_bytes([7; 32]), 2),
    );
    let other = fingerprint(
        &id,
        &LinkageKeys::derive(&MasterSecret::from_bytes([8; 32]), 1),
    );
    assert!(!v1.tokens().is_empty());
    assert!(!shares_a_token(&v1, &v2));
    assert!(!shares_a_token(&v1, &other));
    // Kinds differ in key too: no two tokens of one fingerprint are equal.
    let values: std::collections::HashSet<_> = v1.tokens().iter().map(|t| t.value).collect();
    assert_eq!(values.len(), v1.tokens().len());
    // Fingerprints under different key versions are never compared.
    assert_eq!(compare(&v1, &v2).decision(), Decision::NotComparable);
    assert!(compare(&v1, &v1).is_match());
}

#[test]
fn fingerprint_bytes_round_trip_and_reject_damage() {
    for input in synth::people(3, 20) {
        let a = fp(&input);
        let bytes = a.to_bytes();
        assert_eq!(Fingerprint::from_bytes(&bytes), Ok(a.clone()));
        assert_eq!(bytes.len(), 8 + a.tokens().len() * 17 + 128);
        assert_eq!(
            Fingerprint::from_bytes(&bytes[..bytes.len() - 1]),
            Err(FingerprintError::Length)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Fingerprint::from_bytes(&longer),
            Err(FingerprintError::Length)
        );
        let mut format = bytes.clone();
        format[0] = 9;
        assert_eq!(
            Fingerprint::from_bytes(&format),
            Err(FingerprintError::Format(9))
        );
    }
    let unlinkable = fp(&IdentityInput {
        given_name: Some("Jo".to_owned()),
        ..IdentityInput::default()
    });
    let bytes = unlinkable.to_bytes();
    assert_eq!(bytes.len(), 8);
    assert_eq!(Fingerprint::from_bytes(&bytes), Ok(unlinkable));
}

#[test]
fn lookup_keys_are_kind_and_token() {
    let a = fp(&person("Ana", "Lee", "1999-12-31"));
    let keys = a.lookup_keys();
    assert_eq!(keys.len(), a.tokens().len());
    for (key, token) in keys.iter().zip(a.tokens()) {
        assert_eq!(key[0], token.kind as u8);
        assert_eq!(&key[1..], &token.value);
    }
}

#[test]
fn index_keys_are_the_lookup_keys_of_indexed_kinds() {
    let a = fp(&person("Ana", "Lee", "1999-12-31"));
    let indexed: Vec<Vec<u8>> = a
        .lookup_keys()
        .into_iter()
        .zip(a.tokens())
        .filter(|(_, token)| token.kind.is_indexed())
        .map(|(key, _)| key)
        .collect();
    assert_eq!(a.index_keys(), indexed);
    assert!(a.index_keys().len() < a.lookup_keys().len());
    let stored = TokenKind::ALL.iter().filter(|k| k.is_indexed()).count();
    assert_eq!(stored, 9);
}

#[test]
fn debug_prints_no_identifier() {
    let input = person("Quintessa", "Featherstonehaugh", "1987-06-05");
    let a = fp(&input);
    let text = format!("{a:?} {:?} {:?} {:?}", *KEYS, a.tokens(), compare(&a, &a));
    for needle in ["quintessa", "featherstonehaugh", "1987", "9165550142"] {
        assert!(!text.to_lowercase().contains(needle), "{needle} in {text}");
    }
}

#[test]
fn the_synthetic_data_set_is_labeled_and_shuffled() {
    let config = synth::DatasetConfig {
        size: 200,
        ..synth::DatasetConfig::default()
    };
    let (left, right) = synth::dataset(&config);
    assert_eq!((left.len(), right.len()), (200, 200));
    let shared = right.iter().filter(|r| r.person < 200).count();
    assert_eq!(shared, 180);
    let in_order = right
        .windows(2)
        .filter(|w| w[0].person < w[1].person)
        .count();
    assert!(in_order < 150, "RIGHT is shuffled");
    // Reproducible from the seed.
    let (_, again) = synth::dataset(&config);
    assert_eq!(
        right.iter().map(|r| r.person).collect::<Vec<_>>(),
        again.iter().map(|r| r.person).collect::<Vec<_>>()
    );
}

mod offline_link {
    use std::path::Path;

    use super::super::offline::{Field, FieldMapping, LinkError, LinkFiles, link_files};
    use super::{KEYS, options};

    const MAP: &[&str] = &[
        "given_name=first",
        "surname=last",
        "dob=birth",
        "zip=zip",
        "phone=tel",
    ];

    fn map() -> Vec<FieldMapping> {
        MAP.iter().map(|m| m.parse().expect("mapping")).collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write csv");
        path
    }

    fn run(left: &Path, right: &Path, map: &[FieldMapping]) -> (Result<String, LinkError>, String) {
        let mut out = Vec::new();
        let mut diagnostics = Vec::new();
        let request = LinkFiles {
            left,
            right,
            id_column: "id",
            map,
        };
        let result = link_files(&request, &KEYS, &options(), &mut out, &mut diagnostics)
            .map(|_| String::from_utf8(out).expect("utf-8"));
        (result, String::from_utf8(diagnostics).expect("utf-8"))
    }

    #[test]
    fn links_two_small_files_one_to_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let left = write(
            dir.path(),
            "left.csv",
            "id,first,last,birth,zip,tel\n\
             a1,Maria,Garcia,1984-03-07,95814,916-555-0142\n\
             a2,William,Smith,1970-01-02,95616,\n\
             a3,Quintessa,Okafor,1990-11-02,95605,\n\
             a4,Jo,,,,\n",
        );
        let right = write(
            dir.path(),
            "right.csv",
            "first,id,last,birth,zip,tel\n\
             Bill,b1,Smith,01/02/1970,95616,\n\
             Marai,b2,Garcia,07/03/1984,95814,(916) 555-0142\n\
             Maria,b3,Garcia,03/07/1984,95814,916 555 0142\n\
             Ana,b4,Lee,2001-05-05,95814,\n\
             Zed,b5,Okafor,1990-13-40,95605,\n",
        );
        let (out, diagnostics) = run(&left, &right, &map());
        let out = out.expect("links");
        let mut lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.remove(0), "left_id,right_id,weight,decision");
        lines.sort_unstable();
        let pairs: Vec<(&str, &str)> = lines
            .iter()
            .filter(|l| l.ends_with(",match"))
            .map(|l| {
                let mut cells = l.split(',');
                (cells.next().expect("left"), cells.next().expect("right"))
            })
            .collect();
        // One-to-one: a1 takes the exact b3, not the typo b2.
        assert_eq!(pairs, vec![("a1", "b3"), ("a2", "b1")]);
        // The bad date costs the date, not the row, and is reported by
        // column, field and row, never by value.
        assert!(
            diagnostics.contains(
                "column \"birth\" (dob): 1 values do not normalize and were dropped, the rows \
                 kept (rows 5)"
            ),
            "{diagnostics}"
        );
        assert!(!diagnostics.contains("1990-13-40"), "{diagnostics}");
        assert!(
            diagnostics.contains("1 rows skipped as unlinkable"),
            "{diagnostics}"
        );
    }

    #[test]
    fn one_bad_field_keeps_the_row_and_it_still_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let left = write(
            dir.path(),
            "left.csv",
            "id,first,last,birth,zip,tel\n\
             a1,William,Smith,1970-01-02,95616,916-555-0199\n\
             a2,Maria,Garcia,1984-03-07,95814,916-555-0142\n",
        );
        // b1's ZIP is not a ZIP and b2's phone is not a phone: each costs that
        // field only, and both rows still link on what is left.
        let right = write(
            dir.path(),
            "right.csv",
            "id,first,last,birth,zip,tel\n\
             b1,Bill,Smith,01/02/1970,9561X,916-555-0199\n\
             b2,Maria,Garcia,03/07/1984,95814,555-01\n",
        );
        let (out, diagnostics) = run(&left, &right, &map());
        let out = out.expect("links");
        let mut pairs: Vec<&str> = out
            .lines()
            .skip(1)
            .filter(|l| l.ends_with(",match"))
            .map(|l| &l[..5])
            .collect();
        pairs.sort_unstable();
        assert_eq!(pairs, ["a1,b1", "a2,b2"], "{diagnostics}");
        assert!(
            diagnostics.contains("column \"zip\" (zip): 1 values do not normalize"),
            "{diagnostics}"
        );
        assert!(
            diagnostics.contains("column \"tel\" (phone): 1 values do not normalize"),
            "{diagnostics}"
        );
        assert!(!diagnostics.contains("9561X") && !diagnostics.contains("555-01\n"));
    }

    #[test]
    fn a_missing_mapped_column_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let left = write(dir.path(), "left.csv", "id,first,last,birth,zip,tel\n");
        let right = write(dir.path(), "right.csv", "id,first,surname,birth,zip,tel\n");
        let (result, _) = run(&left, &right, &map());
        let message = result.expect_err("missing column").to_string();
        assert!(message.contains("right.csv"), "{message}");
        assert!(message.contains("\"last\""), "{message}");
        assert!(message.contains("surname"), "{message}");
    }

    #[test]
    fn a_row_that_cannot_be_read_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let left = write(
            dir.path(),
            "left.csv",
            "id,first,last,birth,zip,tel\na1,Ana,Lee,2001-05-05,95814,\na2,Bo,Li\n",
        );
        let right = write(dir.path(), "right.csv", "id,first,last,birth,zip,tel\n");
        let (result, _) = run(&left, &right, &map());
        let message = result.expect_err("short row").to_string();
        assert!(message.contains("left.csv: row 2"), "{message}");
        assert!(!message.contains("Li"), "{message}");

        let bad_utf8 = dir.path().join("bad.csv");
        std::fs::write(
            &bad_utf8,
            b"id,first,last,birth,zip,tel\na1,An\xffa,Lee,2001-05-05,95814,\n",
        )
        .expect("write");
        let (result, _) = run(&bad_utf8, &right, &map());
        let message = result.expect_err("bad utf-8").to_string();
        assert!(message.contains("row 1, column \"first\""), "{message}");
    }

    #[test]
    fn a_duplicate_id_is_named_by_its_rows_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let left = write(
            dir.path(),
            "left.csv",
            "id,first,last,birth,zip,tel\nMRN-7,Ana,Lee,2001-05-05,95814,\n\
             MRN-8,Bo,Li,2001-05-06,95814,\nMRN-7,Cy,Lo,2001-05-07,95814,\n",
        );
        let right = write(dir.path(), "right.csv", "id,first,last,birth,zip,tel\n");
        let mut out = Vec::new();
        let request = LinkFiles {
            left: &left,
            right: &right,
            id_column: "id",
            map: &map(),
        };
        let result = link_files(&request, &KEYS, &options(), &mut out, &mut Vec::new());
        let message = result.expect_err("duplicate id").to_string();
        assert!(
            message.contains("left.csv: row 3, column \"id\": the id is the same as row 1's"),
            "{message}"
        );
        assert!(!message.contains("MRN-7"), "{message}");
        assert!(out.is_empty(), "nothing written");
    }

    #[test]
    fn a_febrl_format_sample_links() {
        let data = Path::new(
            &std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("cargo sets CARGO_MANIFEST_DIR for tests"),
        )
        .join("../tests/data");
        let map: Vec<FieldMapping> = [
            "given_name=given_name",
            "surname=surname",
            "dob=date_of_birth",
            "street=address_1",
            "city=suburb",
        ]
        .iter()
        .map(|m| m.parse().expect("mapping"))
        .collect();
        let mut out = Vec::new();
        let mut diagnostics = Vec::new();
        let request = LinkFiles {
            left: &data.join("febrl_sample_a.csv"),
            right: &data.join("febrl_sample_b.csv"),
            id_column: "rec_id",
            map: &map,
        };
        let summary =
            link_files(&request, &KEYS, &options(), &mut out, &mut diagnostics).expect("links");
        let out = String::from_utf8(out).expect("utf-8");
        let diagnostics = String::from_utf8(diagnostics).expect("utf-8");
        let mut matched: Vec<(String, String)> = out
            .lines()
            .skip(1)
            .filter(|l| l.ends_with(",match"))
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                (cells[0].to_owned(), cells[1].to_owned())
            })
            .collect();
        matched.sort();
        let expected: Vec<(String, String)> = (1..=7)
            .map(|n| (format!("rec-{n}-org"), format!("rec-{n}-dup-0")))
            .collect();
        // Every corrupted copy links to its original, and the two namesakes
        // (rec-9-org, rec-10-org) link to nobody.
        assert_eq!(matched, expected, "{out}\n{diagnostics}");
        // The impossible date cost the date only.
        assert_eq!(summary.right.dropped, [(Field::Dob, 1)], "{diagnostics}");
    }

    #[test]
    fn mappings_parse_and_reject_nonsense() {
        let m: FieldMapping = "dob=Date of Birth".parse().expect("mapping");
        assert_eq!(m.column, "Date of Birth");
        assert!("nickname=x".parse::<FieldMapping>().is_err());
        assert!("given_name".parse::<FieldMapping>().is_err());
        assert!("given_name=".parse::<FieldMapping>().is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(dir.path(), "f.csv", "id,a\n");
        let twice: Vec<FieldMapping> = ["surname=a", "surname=b"]
            .iter()
            .map(|m| m.parse().expect("mapping"))
            .collect();
        let (result, _) = run(&f, &f, &twice);
        assert!(matches!(result, Err(LinkError::DuplicateField { .. })));
    }
}
