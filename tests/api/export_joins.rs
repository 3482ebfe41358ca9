//! Exports against joins and hollow rows, over the real binary:
//!
//! - **The join attack.** Twelve exports of one study over overlapping, nested
//!   and shifted windows, decrypted with the stock `age` tool and joined on
//!   every pseudonym they carry, must stay k-anonymous over distinct people:
//!   every referral shows the same identifying values in every export that
//!   holds it (no referral becomes more specific by joining, e.g. a 5-year age
//!   band from one export and a sex from another), every class of those
//!   values in the union holds at least k people (not rows: one person's two
//!   referrals are one person), every person-describing column is constant
//!   per person, no column outside the study's classes is emitted, and no
//!   partner id is written in clear.
//!
//!   The data is built so that a planner choosing levels per export fails:
//!   window A's people fit 5-year bands with sex, B's need 10-year bands
//!   with sex alone and 5-year bands without sex together with A, and one
//!   woman of A is referred twice, so that A's (30-34, F) class is five rows
//!   but four people.
//! - **Part 2 rows are absent, not hollow.** A substance-use case is not in an
//!   ordinary study's `case_status` (no row with blank program and status, and
//!   no manifest figure counts it), and is there whole in a study configured
//!   for 42 CFR Part 2 research, with the redisclosure notice in its manifest.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Months, NaiveDate};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::exports::{ExportEnv, download, manifest_of, parse_csv, post_export, spawn, unzip};
use crate::helpers::{Backend, TestApp, assert_problem, now, rfc3339_from_now};
use crate::reads::{ok_json, read_as, refer, token};

backend_tests!(
    joined_exports_of_a_study_stay_k_anonymous_over_distinct_people,
    part2_rows_are_absent_from_an_ordinary_study_and_whole_in_a_part2_study,
);

const K: usize = 5;

/// Columns of `referrals.csv` that do not identify in combination: the
/// pseudonyms to join on and the study's analysis variables (what the program
/// did, not who the person is). Every other column must be inside the classes.
const REFERRAL_ANALYSIS_COLUMNS: [&str; 6] = [
    "referral",
    "subject",
    "status",
    "workflow_state",
    "resources",
    "follow_up_by",
];
/// Columns that describe the person rather than the contact.
const PERSON_COLUMNS: [&str; 4] = ["age", "sex", "zip", "state"];
/// Everything `outcomes.csv` and `case_status.csv` may hold: pseudonyms,
/// analysis variables and intervals from a fixed anchor; no date, no
/// organization.
const OUTCOME_COLUMNS: [&str; 6] = [
    "outcome",
    "referral",
    "subject",
    "kind",
    "resource",
    "days_from_contact",
];
const CASE_COLUMNS: [&str; 5] = [
    "case_report",
    "subject",
    "program",
    "status",
    "days_from_first_referral",
];
const PARTNER_IDS: [&str; 6] = [
    "pd",
    "cbo-north",
    "cbo-south",
    "county-health",
    "evaluator",
    "admin",
];

/// One person of the attack: a name, an age today and a sex; the date of
/// birth puts the last birthday 100 days back, so the age is the same on
/// every contact (all within 55 days) and today.
struct Person {
    given: &'static str,
    surname: &'static str,
    age: u32,
    sex: &'static str,
}

const fn person(given: &'static str, surname: &'static str, age: u32, sex: &'static str) -> Person {
    Person {
        given,
        surname,
        age,
        sex,
    }
}

/// Window A (50-41 days ago): 30-34, five women's rows of four women (the
/// last is referred twice), five men. B (30-21 days ago): four in 30-34, six
/// in 35-39, five women and five men. C (15-6 days ago): eleven in 40-49, one
/// of them referred on both sides of his birthday.
const GROUP_A: [Person; 9] = [
    person("Albertine", "Quayside", 31, "F"),
    person("Brunhilde", "Oakhurst", 32, "F"),
    person("Cordelia", "Pemberton", 33, "F"),
    person("Drusilla", "Winterbourne", 34, "F"),
    person("Evander", "Blackthorne", 30, "M"),
    person("Fitzgerald", "Ashcombe", 31, "M"),
    person("Gideon", "Thistlewood", 32, "M"),
    person("Horatio", "Fernsby", 33, "M"),
    person("Ishmael", "Crowther", 34, "M"),
];
const GROUP_B: [Person; 10] = [
    person("Jessamine", "Holloway", 30, "F"),
    person("Kerensa", "Ravenscroft", 31, "F"),
    person("Lavinia", "Merriweather", 33, "F"),
    person("Marmaduke", "Saltonstall", 32, "M"),
    person("Nerissa", "Goldthwaite", 35, "F"),
    person("Ottoline", "Barrowclough", 37, "F"),
    person("Peregrine", "Hartigan", 36, "M"),
    person("Quillon", "Stanbridge", 37, "M"),
    person("Roderick", "Wetherell", 38, "M"),
    person("Septimus", "Kilbride", 39, "M"),
];
const GROUP_C: [Person; 10] = [
    person("Theodora", "Underhill", 41, "F"),
    person("Ursula", "Vexley", 43, "F"),
    person("Valentina", "Ashdown", 45, "F"),
    person("Winifred", "Yardley", 47, "F"),
    person("Xanthe", "Lockwood", 49, "F"),
    person("Ambrose", "Quennell", 40, "M"),
    person("Barnaby", "Rookwood", 42, "M"),
    person("Cuthbert", "Stirling", 44, "M"),
    person("Dorian", "Tolliver", 46, "M"),
    person("Ebenezer", "Upshaw", 48, "M"),
];

fn today() -> NaiveDate {
    chrono::DateTime::from_timestamp(now(), 0)
        .expect("a representable time")
        .date_naive()
}

fn dob_of(age: u32) -> String {
    let last_birthday = today() - chrono::Days::new(100);
    last_birthday
        .checked_sub_months(Months::new(12 * age))
        .expect("a date of birth")
        .to_string()
}

fn referral_of(p: &Person, n: usize, days_ago: i64) -> Value {
    json!({
        "cad_number": format!("CAD-2026-91{n:04}"),
        "officer_id": "OFC-4410",
        "subject": {
            "given_name": p.given,
            "surname": p.surname,
            "dob": dob_of(p.age),
            "sex": p.sex,
            "address": {"street": format!("{} Larkspur Row", 100 + n), "city": "Sacramento",
                        "state": "CA", "zip": "95822"},
            "phone": format!("(916) 555-02{:02}", n % 100),
        },
        "contact_at": rfc3339_from_now(-86_400 * days_ago),
        "district": "d3",
        "resources": ["mental_health"],
        "follow_up_by": "cbo",
        "assign_to": "cbo-north",
    })
}

/// The `from`/`to` of a window `hi` to `lo` days ago (inclusive).
fn window(hi: i64, lo: i64) -> Value {
    let date = |days: i64| {
        chrono::DateTime::from_timestamp(now() - 86_400 * days, 0)
            .expect("a time")
            .date_naive()
            .to_string()
    };
    json!({"study": "join-study", "from": date(hi), "to": date(lo)})
}

async fn start(app: &TestApp, body: &Value) -> String {
    let response = post_export(app, &token("evaluator"), body).await;
    assert_eq!(response.status(), 202, "{body}: {}", app.logs());
    let started: Value = response.json().await.expect("json");
    started["id"].as_str().expect("id").to_owned()
}

/// One decrypted export: its manifest and its tables.
struct Opened {
    manifest: Value,
    tables: BTreeMap<String, Vec<HashMap<String, String>>>,
}

async fn open(app: &TestApp, id: &str, dir: &std::path::Path) -> Opened {
    let body = manifest_of(app, id).await;
    let (_, plaintext) = download(app, id, dir).await;
    let tables = unzip(&plaintext)
        .into_iter()
        .filter(|(name, _)| name != "dictionary.csv")
        .map(|(name, bytes)| (name, parse_csv(&bytes)))
        .collect();
    Opened {
        manifest: body["manifest"].clone(),
        tables,
    }
}

async fn seed_attack(app: &TestApp) -> usize {
    let mut n = 0;
    let mut referrals = Vec::new();
    for (group, first_day) in [(&GROUP_A[..], 50), (&GROUP_B[..], 30), (&GROUP_C[..], 15)] {
        let mut day = first_day;
        for p in group {
            referrals.push(refer(app, &referral_of(p, n, day)).await);
            day -= 1;
            if p.given == "Drusilla" {
                // Drusilla again the next day: the same person (same name,
                // date of birth and phone), a second row in A's (30-34, F)
                // class, and in the window 50-46 days ago, five rows of
                // four people in one class at any level.
                let mut again = referral_of(p, n, day);
                again["cad_number"] = json!("CAD-2026-919999");
                referrals.push(refer(app, &again).await);
                day -= 1;
            }
            n += 1;
        }
    }
    // Fenwick turned 45 ten days ago, between his two referrals (12 and 8
    // days ago): ages at contact would show him as 44 and 45, in two bands;
    // on the plan's reference date he is 45 in both.
    let fenwick = person("Fenwick", "Ulverston", 45, "M");
    let birthday = (today() - chrono::Days::new(10))
        .checked_sub_months(Months::new(12 * 45))
        .expect("a date of birth");
    for day in [12, 8] {
        let mut body = referral_of(&fenwick, 90, day);
        body["subject"]["dob"] = json!(birthday.to_string());
        body["cad_number"] = json!(format!("CAD-2026-9190{day:02}"));
        referrals.push(refer(app, &body).await);
    }
    // Outcomes by the assigned CBO and a health case: the other tables carry
    // their own columns into the join.
    for id in [&referrals[0], &referrals[9], &referrals[19]] {
        let response = app
            .client
            .post(app.url(&format!("/v1/referrals/{id}/outcomes")))
            .bearer_auth(token("cbo-north"))
            .json(&json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0)}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }
    let a = &GROUP_A[0];
    let case = app
        .client
        .post(app.url("/v1/cases"))
        .bearer_auth(token("county-health"))
        .json(&json!({
            "subject": {"given_name": a.given, "surname": a.surname, "dob": dob_of(a.age)},
            "case_ref": "MRN-JOIN-0001", "program": "mental_health", "status": "enrolled",
            "effective_at": rfc3339_from_now(-86_400 * 20),
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(case.status(), 201);
    referrals.len()
}

#[expect(
    clippy::too_many_lines,
    reason = "the attack and its five checks, read in order"
)]
async fn joined_exports_of_a_study_stay_k_anonymous_over_distinct_people(backend: Backend) {
    let env: ExportEnv = spawn(backend).await;
    let app = &env.app;
    let referred = seed_attack(app).await;
    assert_eq!(referred, 32);

    // Act: twelve windows (days ago, inclusive): A, B, C, their unions, halves
    // nested inside them and windows shifted across their edges. The first two
    // start together, so two builds race to fix the study's plan.
    let windows = [
        (50, 41),
        (30, 21),
        (50, 21),
        (15, 6),
        (30, 6),
        (55, 1),
        (50, 46),
        (28, 23),
        (45, 25),
        (35, 10),
        (55, 20),
        (48, 8),
    ];
    let (first, second) = (
        window(windows[0].0, windows[0].1),
        window(windows[1].0, windows[1].1),
    );
    let (first, second) = tokio::join!(start(app, &first), start(app, &second));
    let mut ids = vec![first, second];
    for (hi, lo) in &windows[2..] {
        ids.push(start(app, &window(*hi, *lo)).await);
    }
    let work = tempfile::tempdir().expect("temp dir");
    let mut opened = Vec::new();
    for id in &ids {
        opened.push(open(app, id, work.path()).await);
    }

    // No partner id in clear anywhere, so no pseudonym column can be mapped
    // back through a clear one.
    for o in &opened {
        for (file, rows) in &o.tables {
            for row in rows {
                for (column, value) in row {
                    assert!(
                        !PARTNER_IDS.contains(&value.as_str()),
                        "{file}.{column} names partner {value:?} in clear"
                    );
                }
            }
        }
    }
    // The other tables carry no column that identifies in combination.
    for o in &opened {
        for (file, allowed) in [
            ("outcomes.csv", &OUTCOME_COLUMNS[..]),
            ("case_status.csv", &CASE_COLUMNS[..]),
        ] {
            for row in &o.tables[file] {
                for column in row.keys() {
                    assert!(
                        allowed.contains(&column.as_str()),
                        "{file} emits {column}, which is outside the k classes"
                    );
                }
            }
        }
    }

    // Join on the referral pseudonym: every referral has the same identifying
    // values in every export that holds it (nothing more specific by joining).
    let mut by_referral: BTreeMap<String, (String, BTreeSet<BTreeMap<String, String>>)> =
        BTreeMap::new();
    let mut written = 0;
    for (o, (hi, lo)) in opened.iter().zip(&windows) {
        for row in &o.tables["referrals.csv"] {
            written += 1;
            let identifying: BTreeMap<String, String> = row
                .iter()
                .filter(|(c, _)| !REFERRAL_ANALYSIS_COLUMNS.contains(&c.as_str()))
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect();
            assert!(
                identifying.contains_key("age") && identifying.contains_key("contact_year"),
                "window {hi}-{lo}: {row:?}"
            );
            let entry = by_referral
                .entry(row["referral"].clone())
                .or_insert_with(|| (row["subject"].clone(), BTreeSet::new()));
            assert_eq!(entry.0, row["subject"], "one person per referral");
            entry.1.insert(identifying);
        }
    }
    assert!(written > 0, "the exports wrote referrals");
    for (referral, (_, tuples)) in &by_referral {
        assert_eq!(
            tuples.len(),
            1,
            "referral {referral} is more specific joined than in any one export: {tuples:?}"
        );
    }

    // Each export alone: every class of identifying values holds at least k
    // distinct people (the window 50-46 days ago holds five referrals of four
    // people, all in one class: a count of rows would let them out).
    for (o, (hi, lo)) in opened.iter().zip(&windows) {
        let mut classes: BTreeMap<BTreeMap<&str, &str>, BTreeSet<&str>> = BTreeMap::new();
        for row in &o.tables["referrals.csv"] {
            let identifying = row
                .iter()
                .filter(|(c, _)| !REFERRAL_ANALYSIS_COLUMNS.contains(&c.as_str()))
                .map(|(c, v)| (c.as_str(), v.as_str()))
                .collect();
            classes
                .entry(identifying)
                .or_default()
                .insert(row["subject"].as_str());
        }
        for (class, people) in &classes {
            assert!(
                people.len() >= K,
                "window {hi}-{lo}: class {class:?} holds {} distinct people, fewer than k = {K}",
                people.len()
            );
        }
    }

    // In the union, every class of identifying values holds at least k
    // distinct people.
    let mut classes: BTreeMap<BTreeMap<String, String>, BTreeSet<&str>> = BTreeMap::new();
    for (subject, tuples) in by_referral.values() {
        for tuple in tuples {
            classes.entry(tuple.clone()).or_default().insert(subject);
        }
    }
    for (class, people) in &classes {
        assert!(
            people.len() >= K,
            "class {class:?} holds {} distinct people in the union, fewer than k = {K}",
            people.len()
        );
    }

    // Join on the person pseudonym: what describes the person is the same in
    // every row of every export, so a person's rows combine into nothing
    // more specific than one row.
    let mut per_person: BTreeMap<&str, BTreeSet<Vec<&str>>> = BTreeMap::new();
    for o in &opened {
        for row in &o.tables["referrals.csv"] {
            let described: Vec<&str> = PERSON_COLUMNS
                .iter()
                .map(|c| row.get(*c).map_or("", String::as_str))
                .collect();
            per_person
                .entry(row["subject"].as_str())
                .or_default()
                .insert(described);
        }
    }
    for (subject, described) in &per_person {
        assert_eq!(described.len(), 1, "{subject}: {described:?}");
    }
    // Every table's rows join to referrals some export released.
    for o in &opened {
        for row in &o.tables["outcomes.csv"] {
            assert!(by_referral.contains_key(&row["referral"]));
        }
        for row in &o.tables["case_status.csv"] {
            assert!(per_person.contains_key(row["subject"].as_str()));
        }
    }

    // The study has one plan, made once, and every export says so.
    let plans =
        ok_json(read_as(app, "admin", "/v1/audit/entries?action=export.plan", None).await).await;
    assert_eq!(
        plans["entries"].as_array().map(Vec::len),
        Some(1),
        "one plan for the study: {plans}"
    );
    let levels: BTreeSet<String> = opened
        .iter()
        .map(|o| o.manifest["generalization"].to_string())
        .collect();
    assert_eq!(levels.len(), 1, "one generalization: {levels:?}");
}

async fn post_case(app: &TestApp, given: &str, surname: &str, dob: &str, program: &str, n: u32) {
    let response = app
        .client
        .post(app.url("/v1/cases"))
        .bearer_auth(token("county-health"))
        .json(&json!({
            "subject": {"given_name": given, "surname": surname, "dob": dob},
            "case_ref": format!("MRN-P2-{n:04}"), "program": program, "status": "enrolled",
            "effective_at": rfc3339_from_now(-3_600),
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

async fn part2_rows_are_absent_from_an_ordinary_study_and_whole_in_a_part2_study(backend: Backend) {
    let env = spawn(backend).await;
    let app = &env.app;
    let people = [
        ("Philippa", "Marchbanks", 44),
        ("Quentin", "Hawksworth", 52),
        ("Rosalind", "Featherstone", 38),
    ];
    for (n, (given, surname, age)) in people.iter().enumerate() {
        let p = person(given, surname, *age, "F");
        refer(app, &referral_of(&p, 500 + n, 2)).await;
    }
    post_case(
        app,
        "Philippa",
        "Marchbanks",
        &dob_of(44),
        "mental_health",
        1,
    )
    .await;
    post_case(
        app,
        "Quentin",
        "Hawksworth",
        &dob_of(52),
        "substance_use",
        2,
    )
    .await;

    let work = tempfile::tempdir().expect("temp dir");
    let plain_id = start(app, &json!({"study": "plain-study"})).await;
    let plain = open(app, &plain_id, work.path()).await;
    let part2_id = start(app, &json!({"study": "part2-study"})).await;
    let part2 = open(app, &part2_id, work.path()).await;

    // An ordinary study: the substance-use case is not there at all — no row
    // with blank program and status marks its patient.
    let cases = &plain.tables["case_status.csv"];
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["program"], "mental_health");
    assert!(
        cases
            .iter()
            .all(|c| !c["program"].is_empty() && !c["status"].is_empty()),
        "no hollow row: {cases:?}"
    );
    // No manifest figure counts what was left out.
    let manifest = &plain.manifest;
    assert_eq!(manifest["rows"]["case_status"], 1, "{manifest}");
    assert_eq!(manifest["rows"]["referrals"], 3, "{manifest}");
    let text = manifest.to_string();
    assert!(
        !text.contains("part2") && !text.contains("withheld") && !text.contains("omitted"),
        "{manifest}"
    );
    assert_eq!(manifest["notices"], json!([]), "{manifest}");

    // A Part 2 research study: the case is there whole, and the manifest
    // carries its agreement and the 42 CFR 2.32 redisclosure statement.
    let cases = &part2.tables["case_status.csv"];
    assert_eq!(cases.len(), 2, "{cases:?}");
    let substance: Vec<_> = cases
        .iter()
        .filter(|c| c["program"] == "substance_use")
        .collect();
    assert_eq!(substance.len(), 1, "{cases:?}");
    assert_eq!(substance[0]["status"], "enrolled");
    assert!(substance[0]["subject"].starts_with("cws-"));
    let manifest = &part2.manifest;
    assert_eq!(manifest["rows"]["case_status"], 2);
    assert_eq!(manifest["part2_research"], true, "{manifest}");
    assert_eq!(manifest["part2_dua_reference"], "DUA-TEST-P2-SUD");
    assert!(
        manifest["notices"].as_array().is_some_and(|n| n
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("42 CFR part 2")))),
        "{manifest}"
    );

    // A Part 2 study whose Part 2 agreement has lapsed exports nothing.
    let lapsed = post_export(
        app,
        &token("evaluator"),
        &json!({"study": "part2-lapsed-study"}),
    )
    .await;
    let problem = assert_problem(lapsed, 403).await;
    assert_eq!(problem["errors"][0]["field"], "study", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("DUA-TEST-P2-OLD") && d.contains("2020-06-30")),
        "{problem}"
    );
}
