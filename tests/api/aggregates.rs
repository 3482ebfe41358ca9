//! `GET /v1/aggregates/outcomes` over the real binary: what a dashboard would
//! show, that no small count ever leaves, that a withheld cell cannot be worked
//! out from what is published, the parameters' problems, and the
//! differential-privacy budget (spent, refused, kept across a restart).
//!
//! Referrals are made through the API and then moved to explicit times in
//! past months with SQL (the gateway only reports months that have ended).

use chrono::{Datelike as _, Months, TimeZone as _, Utc};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{AppOptions, Backend, TestApp, assert_problem, spawn_app, spawn_app_with};
use crate::reads::token;

backend_tests!(
    a_dashboard_table_withholds_small_cells_and_cannot_be_differenced,
    bad_aggregate_requests_are_named_and_nothing_is_recorded,
    the_privacy_budget_is_spent_refused_and_kept_across_a_restart,
);

const THRESHOLD: u64 = 11;

/// The first instant of the month `back` months before the current one.
pub(crate) fn month_start(back: u32) -> chrono::DateTime<Utc> {
    let now = Utc
        .timestamp_opt(crate::helpers::now(), 0)
        .single()
        .expect("a time");
    let first = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .expect("a date");
    first - Months::new(back)
}

pub(crate) fn month_text(back: u32) -> String {
    month_start(back).format("%Y-%m").to_string()
}

/// One referral to seed: its month (months back), district, and the minutes
/// to its first contact, if any.
pub(crate) struct Seed {
    pub back: u32,
    pub district: &'static str,
    pub contact_after_minutes: Option<i64>,
}

/// Makes the referrals through the API, records a `contacted` outcome for
/// those with a contact, then moves each to its month (an hour apart) and its
/// outcome to the given delay after it (occurred and recorded then). Returns
/// the referrals' ids.
pub(crate) async fn seed(app: &TestApp, seeds: &[Seed]) -> Vec<String> {
    let mut body = String::new();
    for (i, s) in seeds.iter().enumerate() {
        body.push_str(
            &json!({
                    "subject": {"given_name": format!("Agg{i}"), "surname": "Demo"},
                    "contact_at": crate::helpers::rfc3339_from_now(-3600),
                    "district": s.district,
                    "resources": ["homelessness"],
                    "assign_to": "cbo-north",
            })
            .to_string(),
        );
        body.push('\n');
    }
    let response = app
        .client
        .post(app.url("/v1/referrals/batch"))
        .bearer_auth(token("pd"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let ids: Vec<String> = text
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("JSON line");
            line["referral"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("created: {line}"))
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), seeds.len());
    for (id, s) in ids.iter().zip(seeds) {
        if s.contact_after_minutes.is_some() {
            let outcome = app
                .client
                .post(app.url(&format!("/v1/referrals/{id}/outcomes")))
                .bearer_auth(token("cbo-north"))
                .json(&json!({"kind": "contacted", "occurred_at": crate::helpers::rfc3339_from_now(0)}))
                .send()
                .await
                .expect("request");
            assert_eq!(outcome.status(), 201, "{:?}", outcome.text().await);
        }
    }
    let pool = app.db_pool().await;
    for (i, (id, s)) in ids.iter().zip(seeds).enumerate() {
        let at = month_start(s.back).timestamp_micros()
            + i64::try_from(i + 1).expect("small") * 3_600_000_000;
        sqlx::query("UPDATE referrals SET created_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id.clone())
            .execute(&pool)
            .await
            .expect("move the referral");
        if let Some(minutes) = s.contact_after_minutes {
            // Recorded when it occurred, long before the month settled.
            sqlx::query(
                "UPDATE outcomes SET occurred_at = $1, created_at = $1 WHERE referral_id = $2",
            )
            .bind(at + minutes * 60_000_000)
            .bind(id.clone())
            .execute(&pool)
            .await
            .expect("move the outcome");
        }
    }
    pool.close().await;
    ids
}

pub(crate) async fn aggregate(app: &TestApp, partner: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/aggregates/outcomes?{query}")))
        .bearer_auth(token(partner))
        .send()
        .await
        .expect("request")
}

pub(crate) async fn table(app: &TestApp, partner: &str, query: &str) -> Value {
    let response = aggregate(app, partner, query).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.expect("JSON")
}

pub(crate) fn rows(table: &Value) -> &Vec<Value> {
    table["rows"].as_array().expect("rows")
}

/// The row whose groupings are exactly `keys` (others absent from `keys` are
/// totals, `null`).
pub(crate) fn row<'a>(table: &'a Value, keys: &[(&str, &str)]) -> &'a Value {
    let group_by: Vec<&str> = table["group_by"]
        .as_array()
        .expect("group_by")
        .iter()
        .map(|g| g.as_str().expect("text"))
        .collect();
    rows(table)
        .iter()
        .find(|r| {
            group_by.iter().all(|g| {
                let want = keys.iter().find(|(k, _)| k == g).map(|(_, v)| *v);
                match want {
                    Some(v) => r[*g] == json!(v),
                    None => r[*g].is_null(),
                }
            })
        })
        .unwrap_or_else(|| panic!("no row {keys:?}"))
}

/// Every published count is 0 or at least the threshold; a withheld one is
/// `null` and flagged.
pub(crate) fn assert_no_small_count(table: &Value) {
    for r in rows(table) {
        if let Some(count) = r["count"].as_u64() {
            assert!(count == 0 || count >= THRESHOLD, "published {r}");
            assert_eq!(r["suppressed"], false, "{r}");
        } else {
            assert!(r["count"].is_null(), "{r}");
            assert_eq!(r["suppressed"], true, "{r}");
            assert!(r.get("median_minutes_to_first_contact").is_none(), "{r}");
        }
    }
}

/// An attacker with the published table: for each month, every line (the
/// cells along one grouping with the others fixed) adds up to its total. It
/// eliminates over every linear combination of those equations and reports the
/// withheld rows that come out pinned to one value.
fn recoverable_cells(table: &Value) -> Vec<Value> {
    let group_by: Vec<String> = table["group_by"]
        .as_array()
        .expect("group_by")
        .iter()
        .map(|g| g.as_str().expect("text").to_owned())
        .collect();
    let rows = rows(table);
    let unknowns: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i]["suppressed"] == true)
        .collect();
    let mut equations: Vec<(Vec<f64>, f64)> = Vec::new();
    for (t, total) in rows.iter().enumerate() {
        for g in group_by.iter().skip(1) {
            if !total[g].is_null() {
                continue;
            }
            // The members: same month and other groupings, this one set.
            let members: Vec<usize> = (0..rows.len())
                .filter(|&i| {
                    !rows[i][g].is_null()
                        && group_by
                            .iter()
                            .filter(|o| *o != g)
                            .all(|o| rows[i][o] == total[o])
                })
                .collect();
            let mut coefficients = vec![0.0; unknowns.len()];
            let mut rhs = 0.0;
            for (i, sign) in members.iter().map(|&m| (m, 1.0)).chain([(t, -1.0)]) {
                match unknowns.iter().position(|&u| u == i) {
                    Some(col) => coefficients[col] += sign,
                    #[expect(clippy::cast_precision_loss, reason = "small counts")]
                    None => rhs -= sign * rows[i]["count"].as_u64().expect("count") as f64,
                }
            }
            if coefficients.iter().any(|c| *c != 0.0) {
                equations.push((coefficients, rhs));
            }
        }
    }
    // Gauss-Jordan elimination.
    let mut pivots = Vec::new();
    let mut r = 0;
    for col in 0..unknowns.len() {
        let Some(p) = (r..equations.len()).find(|&i| equations[i].0[col].abs() > 1e-9) else {
            continue;
        };
        equations.swap(r, p);
        let lead = equations[r].0[col];
        for v in &mut equations[r].0 {
            *v /= lead;
        }
        equations[r].1 /= lead;
        let pivot = equations[r].clone();
        for (i, e) in equations.iter_mut().enumerate() {
            if i != r && e.0[col].abs() > 1e-12 {
                let f = e.0[col];
                for (v, p) in e.0.iter_mut().zip(&pivot.0) {
                    *v -= f * p;
                }
                e.1 -= f * pivot.1;
            }
        }
        pivots.push((col, r));
        r += 1;
    }
    pivots
        .into_iter()
        .filter(|&(col, row)| {
            equations[row]
                .0
                .iter()
                .enumerate()
                .all(|(c, v)| c == col || v.abs() < 1e-9)
        })
        .map(|(col, _)| rows[unknowns[col]].clone())
        .collect()
}

pub(crate) fn uncontacted(
    back: u32,
    district: &'static str,
    n: usize,
) -> impl Iterator<Item = Seed> {
    (0..n).map(move |_| Seed {
        back,
        district,
        contact_after_minutes: None,
    })
}

async fn a_dashboard_table_withholds_small_cells_and_cannot_be_differenced(backend: Backend) {
    let app = spawn_app(backend).await;
    // Three months ago: north 15 (12 contacted, 10..120 minutes), south 3,
    // east 20. Two months ago: north 12.
    let mut seeds: Vec<Seed> = (0..15)
        .map(|i| Seed {
            back: 3,
            district: "north",
            contact_after_minutes: (i < 12).then_some(10 * (i + 1)),
        })
        .collect();
    seeds.extend(uncontacted(3, "south", 3));
    seeds.extend(uncontacted(3, "east", 20));
    seeds.extend(uncontacted(2, "north", 12));
    seed(&app, &seeds).await;
    let (m3, m2) = (month_text(3), month_text(2));

    // The month totals, and the median time to first contact: 65 minutes
    // (the middle two of 10, 20, ..., 120).
    let totals = table(&app, "pd", &format!("from={m3}&to={m2}")).await;
    assert_eq!(totals["group_by"], json!(["month"]));
    assert_eq!(totals["unit"], "referral");
    assert_eq!(totals["suppression_threshold"], 11);
    assert_eq!(row(&totals, &[("month", &m3)])["count"], 38);
    assert_eq!(
        row(&totals, &[("month", &m3)])["median_minutes_to_first_contact"],
        65.0
    );
    assert_eq!(row(&totals, &[("month", &m2)])["count"], 12);
    assert!(
        row(&totals, &[("month", &m2)])
            .get("median_minutes_to_first_contact")
            .is_none()
    );

    // By district: south's 3 is withheld, and so is one more district, or the
    // month's total would give it away.
    let by_district = table(&app, "pd", &format!("from={m3}&to={m2}&group_by=district")).await;
    assert_no_small_count(&by_district);
    let south = row(&by_district, &[("month", &m3), ("district", "south")]);
    assert_eq!(south["suppressed"], true);
    assert!(south["count"].is_null());
    assert_eq!(row(&by_district, &[("month", &m3)])["count"], 38);
    assert_eq!(
        row(&by_district, &[("month", &m3), ("district", "north")])["suppressed"],
        true
    );
    assert_eq!(
        row(&by_district, &[("month", &m3), ("district", "east")])["count"],
        20
    );
    assert!(recoverable_cells(&by_district).is_empty());

    // The dashboard's table, month x district x outcome, and the others.
    for group_by in [
        "district,outcome",
        "outcome",
        "district,resource,outcome",
        "assigned_cbo,outcome",
    ] {
        let t = table(
            &app,
            "pd",
            &format!("from={m3}&to={m2}&group_by={group_by}"),
        )
        .await;
        assert_no_small_count(&t);
        let recovered = recoverable_cells(&t);
        assert!(recovered.is_empty(), "{group_by}: recovered {recovered:?}");
    }
    let by_outcome = table(
        &app,
        "county-health",
        &format!("from={m3}&to={m3}&group_by=outcome"),
    )
    .await;
    assert_eq!(
        rows(&by_outcome).len(),
        9,
        "every status and the total, zeros included"
    );
    assert_eq!(
        row(&by_outcome, &[("month", &m3), ("outcome", "closed")])["count"],
        0
    );
    assert_eq!(
        row(&by_outcome, &[("month", &m3), ("outcome", "new")])["count"],
        26
    );
    assert_eq!(
        row(&by_outcome, &[("month", &m3), ("outcome", "contacted")])["count"],
        12
    );

    assert_each_answer_audited(&app, &m3, 7).await;
}

/// Each answer is one aggregate.read entry with the query's shape, no count.
async fn assert_each_answer_audited(app: &TestApp, first_from: &str, answers: usize) {
    let pool = app.db_pool().await;
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'aggregate.read' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .expect("entries");
    assert_eq!(details.len(), answers);
    let first: Value = serde_json::from_str(&details[0]).expect("JSON");
    assert_eq!(first["from"], json!(first_from));
    assert_eq!(first["group_by"], json!([]));
    assert!(
        !details
            .iter()
            .any(|d| d.contains("38") || d.contains("\"count\"")),
        "{details:?}"
    );
}

async fn bad_aggregate_requests_are_named_and_nothing_is_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = month_text(0);
    let last = month_text(1);
    for (query, parameter) in [
        ("to=2025-01".to_owned(), "from"),
        ("from=2025-01".to_owned(), "to"),
        (format!("from=2025-01-15&to={last}"), "from"),
        (format!("from=2025-1&to={last}"), "from"),
        ("from=2025-03&to=2025-02".to_owned(), "to"),
        (format!("from={last}&to={current}"), "to"),
        ("from=2019-01&to=2025-01".to_owned(), "to"),
        (
            "from=2025-01&to=2025-01&group_by=district,district".to_owned(),
            "group_by",
        ),
        (
            "from=2025-01&to=2025-01&group_by=subject".to_owned(),
            "group_by",
        ),
        ("from=2025-01&to=2025-01&epsilon=0.1".to_owned(), "epsilon"),
        ("from=2025-01&to=2025-01&from=2025-02".to_owned(), "from"),
        (
            "from=2025-01&to=2025-01&district=north".to_owned(),
            "district",
        ),
    ] {
        let problem = assert_problem(aggregate(&app, "pd", &query).await, 400).await;
        assert_eq!(
            problem["errors"][0]["field"], parameter,
            "{query}: {problem}"
        );
    }
    let bogus = app
        .client
        .get(app.url("/v1/aggregates/outcomes?from=2025-01&to=2025-01"))
        .bearer_auth(token("pd"))
        .header("X-Purpose-Of-Use", "bogus")
        .send()
        .await
        .expect("request");
    let problem = assert_problem(bogus, 400).await;
    assert_eq!(problem["errors"][0]["field"], "X-Purpose-Of-Use");
    // A purpose the policy does not give police: refused, default deny.
    let treatment = app
        .client
        .get(app.url("/v1/aggregates/outcomes?from=2025-01&to=2025-01"))
        .bearer_auth(token("pd"))
        .header("X-Purpose-Of-Use", "HRESCH")
        .send()
        .await
        .expect("request");
    assert_problem(treatment, 403).await;
    let unauthenticated = app
        .get("/v1/aggregates/outcomes?from=2025-01&to=2025-01", None)
        .await;
    assert_problem(unauthenticated, 401).await;

    let pool = app.db_pool().await;
    let released: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'aggregate.read'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(released, 0, "nothing was released");
}

pub(crate) fn dp_options(db_url: Option<&str>) -> AppOptions {
    let mut env = vec![
        (
            "CROSSWALK_AGGREGATES__DP__ENABLED".to_owned(),
            "true".to_owned(),
        ),
        (
            "CROSSWALK_AGGREGATES__DP__EPSILON_PER_MONTH".to_owned(),
            "1.0".to_owned(),
        ),
    ];
    if let Some(url) = db_url {
        env.push(("DATABASE_URL".to_owned(), url.to_owned()));
    }
    AppOptions { env }
}

/// One cap per data month, shared by every partner; a month's noisy table is
/// made once and served as made (the same noise, nothing spent) to every later
/// asker, across a restart; a table the month cannot pay for is refused and
/// spends nothing.
async fn the_privacy_budget_is_spent_refused_and_kept_across_a_restart(backend: Backend) {
    let mut app = spawn_app_with(backend, dp_options(None)).await;
    let mut seeds: Vec<Seed> = uncontacted(2, "north", 30).collect();
    seeds.extend(uncontacted(3, "north", 30));
    seed(&app, &seeds).await;
    let (m2, m3) = (month_text(2), month_text(3));
    let query = |month: &str, group_by: &str, epsilon: &str| {
        format!("from={month}&to={month}&group_by={group_by}&epsilon={epsilon}")
    };

    let first = table(&app, "pd", &query(&m2, "district,outcome", "0.4")).await;
    assert_eq!(first["privacy"]["mechanism"], "discrete_laplace");
    assert_eq!(first["privacy"]["epsilon_spent"], 0.4);
    assert_eq!(first["privacy"]["months"][0]["table"], "made");
    assert_eq!(first["privacy"]["months"][0]["epsilon_remaining"], 0.6);
    assert_no_small_count(&first);
    assert!(
        rows(&first)
            .iter()
            .all(|r| r.get("median_minutes_to_first_contact").is_none())
    );

    // Asked again, by the same partner or another: the same table, free.
    for partner in ["pd", "county-health"] {
        let again = table(&app, partner, &query(&m2, "district,outcome", "0.4")).await;
        assert_eq!(again["rows"], first["rows"], "{partner}: the same noise");
        assert_eq!(again["privacy"]["epsilon_spent"], 0.0);
        assert_eq!(again["privacy"]["months"][0]["table"], "stored");
        assert_eq!(again["privacy"]["months"][0]["epsilon_remaining"], 0.6);
    }
    // A new table of the month spends from the one cap, whoever asks.
    let by_district = table(&app, "county-health", &query(&m2, "district", "0.4")).await;
    assert_eq!(
        by_district["privacy"]["months"][0]["epsilon_remaining"],
        0.2
    );
    let refused = assert_problem(
        aggregate(&app, "pd", &query(&m2, "outcome", "0.4")).await,
        403,
    )
    .await;
    assert_eq!(
        refused["type"],
        "https://crosswalk.invalid/problems/privacy-budget-exhausted"
    );
    assert_eq!(refused["epsilon_remaining"], 0.2);
    // A range whose one month cannot pay is refused whole, spending nothing.
    let range = format!("from={m3}&to={m2}&group_by=outcome&epsilon=0.4");
    assert_problem(aggregate(&app, "pd", &range).await, 403).await;
    let other_month = table(&app, "pd", &query(&m3, "outcome", "0.4")).await;
    assert_eq!(
        other_month["privacy"]["months"][0]["epsilon_remaining"], 0.6,
        "another month has its own cap, untouched by the refused range"
    );

    app.stop().await;
    let restarted = spawn_app_with(backend, dp_options(Some(&app.db.url))).await;
    let still = assert_problem(
        aggregate(&restarted, "pd", &query(&m2, "outcome", "0.4")).await,
        403,
    )
    .await;
    assert_eq!(
        still["epsilon_remaining"], 0.2,
        "the cap survives a restart"
    );
    let kept = table(&restarted, "pd", &query(&m2, "district,outcome", "0.4")).await;
    assert_eq!(kept["rows"], first["rows"], "and so does the table");
    let last = table(&restarted, "pd", &query(&m2, "outcome", "0.2")).await;
    assert_eq!(last["privacy"]["months"][0]["epsilon_remaining"], 0.0);
    assert_problem(
        aggregate(&restarted, "pd", &query(&m2, "outcome", "0.000001")).await,
        403,
    )
    .await;

    // Each spend is in the ledger, under the data month and the partner whose
    // request made the table; every answer is in the audit log
    // (`restarted` runs on the first gateway's database).
    let pool = app.db_pool().await;
    let ledger: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT partner, period, epsilon_micro FROM aggregate_budget_ledger ORDER BY at, id",
    )
    .fetch_all(&pool)
    .await
    .expect("ledger");
    assert_eq!(
        ledger,
        vec![
            ("pd".to_owned(), m2.clone(), 400_000),
            ("county-health".to_owned(), m2.clone(), 400_000),
            ("pd".to_owned(), m3.clone(), 400_000),
            ("pd".to_owned(), m2.clone(), 200_000),
        ]
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'aggregate.read'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(audited, 7, "every answer, the free ones included");
}
