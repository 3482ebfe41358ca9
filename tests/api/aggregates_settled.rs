//! Published months are fixed: a month's table is counted once, from the
//! month as it stood at its cut-off (`aggregates.settle_days` after it ends),
//! and served unchanged to every asker; before the cut-off the month is
//! refused, naming `to` and saying when it settles.
//!
//! The attack: ask an ended month by district x outcome, record one outcome
//! on one of its referrals, ask again, and see which withheld cell moved.

use serde_json::{Value, json};

use crate::aggregates::{Seed, aggregate, month_text, row, seed, table, uncontacted};
use crate::backend_tests;
use crate::helpers::{AppOptions, Backend, assert_problem, spawn_app, spawn_app_with};
use crate::reads::token;

backend_tests!(
    a_published_month_does_not_move_when_an_outcome_is_recorded,
    an_unsettled_month_is_refused_naming_when_it_settles,
    a_months_table_is_the_same_whatever_range_it_is_asked_in,
);

async fn record_outcome(app: &crate::helpers::TestApp, referral: &str, kind: &str) {
    let response = app
        .client
        .post(app.url(&format!("/v1/referrals/{referral}/outcomes")))
        .bearer_auth(token("cbo-north"))
        .json(&json!({"kind": kind, "occurred_at": crate::helpers::rfc3339_from_now(-60)}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

async fn a_published_month_does_not_move_when_an_outcome_is_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    // Two months ago (settled: its cut-off, 14 days after it ended, is past):
    // north 20 referrals, none contacted, and south 12.
    let mut seeds: Vec<Seed> = uncontacted(2, "north", 20).collect();
    seeds.extend(uncontacted(2, "south", 12));
    let ids = seed(&app, &seeds).await;
    let m2 = month_text(2);
    let query = format!("from={m2}&to={m2}&group_by=district,outcome");

    // An outcome recorded after the cut-off, before anyone asked: not counted,
    // for the month is counted as it stood at its cut-off.
    record_outcome(&app, &ids[0], "contacted").await;
    let before = table(&app, "pd", &query).await;
    let north_new = row(
        &before,
        &[("month", &m2), ("district", "north"), ("outcome", "new")],
    );
    assert_eq!(north_new["count"], 20, "{before}");
    let north_contacted = row(
        &before,
        &[
            ("month", &m2),
            ("district", "north"),
            ("outcome", "contacted"),
        ],
    );
    assert_eq!(north_contacted["count"], 0, "{before}");

    // One more outcome on a referral of the month: the same table, to pd and
    // to everyone else.
    record_outcome(&app, &ids[1], "engaged").await;
    record_outcome(&app, &ids[25], "declined").await;
    for partner in ["pd", "county-health"] {
        let after = table(&app, partner, &query).await;
        assert_eq!(after["rows"], before["rows"], "{partner}: the month moved");
    }
    let coarser = table(&app, "pd", &format!("from={m2}&to={m2}&group_by=outcome")).await;
    assert_eq!(
        row(&coarser, &[("month", &m2), ("outcome", "new")])["count"],
        32,
        "every grouping of the month is counted from the same settled copy"
    );

    // The month was settled once, and that is in the audit log.
    let pool = app.db_pool().await;
    let settles: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'aggregate.settle' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .expect("entries");
    assert_eq!(settles.len(), 1, "{settles:?}");
    let detail: Value = serde_json::from_str(&settles[0]).expect("JSON");
    assert_eq!(detail["month"], json!(m2));
    assert_eq!(detail["referrals"], 32);
}

async fn an_unsettled_month_is_refused_naming_when_it_settles(backend: Backend) {
    // 40 days after it ends, last month cannot have settled yet, whatever
    // today's date.
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_AGGREGATES__SETTLE_DAYS".to_owned(),
                "40".to_owned(),
            )],
        },
    )
    .await;
    let seeds: Vec<Seed> = uncontacted(1, "north", 12).collect();
    seed(&app, &seeds).await;
    let (m1, m2) = (month_text(1), month_text(2));
    for query in [
        format!("from={m1}&to={m1}"),
        format!("from={m2}&to={m1}&group_by=district"),
        format!("from={m1}&to={}", month_text(0)),
    ] {
        let problem = assert_problem(aggregate(&app, "pd", &query).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "to", "{query}: {problem}");
    }
    let problem = assert_problem(
        aggregate(&app, "pd", &format!("from={m1}&to={m1}")).await,
        400,
    )
    .await;
    let settles_at = (crate::aggregates::month_start(0) + chrono::Duration::days(40))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let said = problem.to_string();
    assert!(
        said.contains(&format!("{m1} settles at {settles_at}")),
        "says when it settles: {said}"
    );

    // Nothing was settled, released or counted.
    let pool = app.db_pool().await;
    for (table, sql) in [
        (
            "aggregate_settled_months",
            "SELECT COUNT(*) FROM aggregate_settled_months",
        ),
        (
            "aggregate_settled_referrals",
            "SELECT COUNT(*) FROM aggregate_settled_referrals",
        ),
        (
            "audit",
            "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'aggregate.%'",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(n, 0, "{table}");
    }
}

/// The curious partner's second request: the same month inside a longer
/// range (whose other month has a district this one lacks) must give the same
/// rows as the month alone — a month's table depends on the month only.
async fn a_months_table_is_the_same_whatever_range_it_is_asked_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut seeds: Vec<Seed> = uncontacted(2, "north", 20).collect();
    seeds.extend(uncontacted(3, "east", 15));
    seed(&app, &seeds).await;
    let (m2, m3) = (month_text(2), month_text(3));
    let alone = table(
        &app,
        "pd",
        &format!("from={m2}&to={m2}&group_by=district,outcome"),
    )
    .await;
    let ranged = table(
        &app,
        "county-health",
        &format!("from={m3}&to={m2}&group_by=district,outcome"),
    )
    .await;
    let of_m2: Vec<&Value> = ranged["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["month"] == json!(m2))
        .collect();
    let alone: Vec<&Value> = alone["rows"].as_array().expect("rows").iter().collect();
    assert_eq!(of_m2, alone, "{m2} inside a range differs from {m2} alone");
}
