//! The repository's reading paths on real databases, and the median selection.

use super::{Column, GroupCount, GroupMedian, MonthGroups, middle_of};
use crate::store::Store;

/// 2026-01-01T00:00:00Z and 2026-02-01, unix microseconds.
const JAN: i64 = 1_767_225_600_000_000;
const FEB: i64 = 1_769_904_000_000_000;
const MAR: i64 = 1_772_323_200_000_000;
const MINUTE: i64 = 60_000_000;

/// January: district d1 has four contacted referrals (10, 40, 20, 30
/// minutes) and one not contacted, all `engaged` but the last (`new`),
/// asking for `mental_health` (and the first also `housing`); d2 one
/// contacted after 5 minutes. February: nothing.
async fn fill(store: &Store) {
    let rows: [(&str, &str, &str, Option<i64>); 6] = [
        ("r1", "d1", "engaged", Some(10)),
        ("r2", "d1", "engaged", Some(40)),
        ("r3", "d1", "engaged", Some(20)),
        ("r4", "d1", "engaged", Some(30)),
        ("r5", "d1", "new", None),
        ("r6", "d2", "contacted", Some(5)),
    ];
    let mut tx = store.begin().await.expect("begin");
    crate::store::testing::insert_person(&mut tx).await;
    for (n, (id, district, status, delay)) in rows.iter().enumerate() {
        let at = JAN + i64::try_from(n).expect("small") * MINUTE;
        sqlx::query(
            "INSERT INTO referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, \
             status, workflow_state, contact_at, district, arrested, resources, follow_up_by, \
             created_at, updated_at, sealed, first_contact_at) \
             VALUES ($1, 'pd', 's', 'i', 'cbo-north', $2, 'open', $3, $4, NULL, '[]', NULL, \
             $3, $3, NULL, $5)",
        )
        .bind(*id)
        .bind(*status)
        .bind(at)
        .bind(*district)
        .bind(delay.map(|d| at + d * MINUTE))
        .execute(&mut *tx)
        .await
        .expect("referral");
        for resource in ["mental_health"]
            .iter()
            .chain((n == 0).then_some(&"housing"))
        {
            sqlx::query("INSERT INTO referral_resources (referral_id, resource) VALUES ($1, $2)")
                .bind(*id)
                .bind(*resource)
                .execute(&mut *tx)
                .await
                .expect("resource");
        }
    }
    tx.commit().await.expect("commit");
    settle(store, &[("2026-01", JAN, FEB), ("2026-02", FEB, MAR)], MAR).await;
}

/// Settles each `(month, from, to)` with the cut-off `cutoff`.
async fn settle(store: &Store, months: &[(&str, i64, i64)], cutoff: i64) {
    let mut tx = store.begin().await.expect("begin");
    for &(month, from, to) in months {
        let copied = super::settled::settle_month(
            &mut tx,
            &super::settled::MonthToSettle {
                month: month.to_owned(),
                from,
                to,
                cutoff,
            },
            cutoff,
        )
        .await
        .expect("settle");
        assert!(copied.is_some(), "{month} was not settled before");
    }
    tx.commit().await.expect("commit");
}

fn sorted(month: MonthGroups) -> (Vec<GroupCount>, Vec<GroupMedian>) {
    let (mut counts, mut medians) = (month.counts, month.medians);
    counts.sort_by(|a, b| a.values.cmp(&b.values));
    medians.sort_by(|a, b| a.values.cmp(&b.values));
    (counts, medians)
}

fn median(values: &[&str], contacted: i64, middle_sum: i64, middle_count: i64) -> GroupMedian {
    GroupMedian {
        values: values.iter().map(ToString::to_string).collect(),
        contacted,
        middle_sum: middle_sum * MINUTE,
        middle_count,
    }
}

/// Every way the store reads a month — natively on a SQLite file, by SQL
/// (`group_concat`, the in-memory SQLite path) and on PostgreSQL
/// (`string_agg`) — gives the same counts and middle delays.
async fn every_reading_path_gives_the_same_groups(store: Store) {
    fill(&store).await;
    let months = [(JAN, FEB), (FEB, MAR)];
    let by_district = [Column::District, Column::Status];
    let read = super::read_months(&store, &by_district, &months, true)
        .await
        .expect("read");
    let (counts, medians) = sorted(read.into_iter().next().expect("January"));
    let values = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        counts,
        vec![
            GroupCount {
                values: values(&["d1", "engaged"]),
                count: 4
            },
            GroupCount {
                values: values(&["d1", "new"]),
                count: 1
            },
            GroupCount {
                values: values(&["d2", "contacted"]),
                count: 1
            },
        ]
    );
    // Four delays: the middle two are 20 and 30 minutes.
    assert_eq!(
        medians,
        vec![
            median(&["d1", "engaged"], 4, 50, 2),
            median(&["d2", "contacted"], 1, 5, 1)
        ]
    );

    for columns in [&by_district[..], &[Column::Resource, Column::Status], &[]] {
        let read = super::read_months(&store, columns, &months, true)
            .await
            .expect("read");
        let mut tx = store.begin_read().await.expect("snapshot");
        for (month, &(from, to)) in read.into_iter().zip(&months) {
            let (counts, medians) = sorted(month);
            let (sql_counts, sql_medians) =
                super::count_and_median_month(&mut tx, columns, from, to)
                    .await
                    .expect("by SQL");
            let sql = sorted(MonthGroups {
                counts: sql_counts,
                medians: sql_medians,
            });
            assert_eq!((counts.clone(), medians), sql, "{columns:?} from {from}");
            let mut plain = super::count_month(&mut tx, columns, from, to)
                .await
                .expect("counts");
            plain.sort_by(|a, b| a.values.cmp(&b.values));
            assert_eq!(counts, plain, "{columns:?} from {from}");
        }
        tx.commit().await.expect("end");
    }
    let without = super::read_months(&store, &[], &months, false)
        .await
        .expect("read");
    assert_eq!(without[0].counts[0].count, 6);
    assert!(without[0].medians.is_empty(), "no medians asked");
    assert_eq!(
        without[1].counts[0].count, 0,
        "an empty month is one row of zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_path_gives_the_same_groups_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("aggregates.db").display());
    let store = Store::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate");
    every_reading_path_gives_the_same_groups(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_path_gives_the_same_groups_on_postgres() {
    if let Some(store) = crate::store::testing::postgres_store("aggregates").await {
        every_reading_path_gives_the_same_groups(store).await;
    }
}

/// Outcomes as (kind, minutes after receipt, recorded before the cut-off?).
type Recorded = &'static [(&'static str, i64, bool)];

/// Referral `id` (the `n`th of January, in d1), assigned to cbo-north on
/// receipt, then to cbo-south (the first after `cutoff`, the others a minute
/// later), with its `outcomes`.
async fn insert_history(
    tx: &mut crate::store::Tx<'_>,
    n: usize,
    id: &str,
    status: &str,
    outcomes: Recorded,
    cutoff: i64,
) {
    let at = JAN + i64::try_from(n).expect("small") * MINUTE;
    sqlx::query(
        "INSERT INTO referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, \
         status, workflow_state, contact_at, district, arrested, resources, follow_up_by, \
         created_at, updated_at, sealed) \
         VALUES ($1, 'pd', 's', 'i', 'cbo-south', $2, 'open', $3, 'd1', NULL, '[]', NULL, \
         $3, $3, NULL)",
    )
    .bind(id.to_owned())
    .bind(status.to_owned())
    .bind(at)
    .execute(&mut **tx)
    .await
    .expect("referral");
    // Assigned to cbo-north on receipt; q1 moved to cbo-south after the cut-off.
    let moves: &[(&str, i64)] = if n == 0 {
        &[("cbo-north", at), ("cbo-south", cutoff + MINUTE)]
    } else {
        &[("cbo-north", at), ("cbo-south", at + MINUTE)]
    };
    for (k, (cbo, when)) in moves.iter().enumerate() {
        sqlx::query(
            "INSERT INTO referral_assignments (id, referral_id, from_cbo, to_cbo, cause, \
             route, rule_index, reason, assigned_by, at) \
             VALUES ($1, $2, NULL, $3, 'submitted', 'explicit', NULL, NULL, 'pd', $4)",
        )
        .bind(format!("{id}-a{k}"))
        .bind(id.to_owned())
        .bind((*cbo).to_owned())
        .bind(*when)
        .execute(&mut **tx)
        .await
        .expect("assignment");
    }
    for (k, (kind, minutes, before)) in outcomes.iter().enumerate() {
        let recorded = if *before {
            at + minutes * MINUTE
        } else {
            cutoff + MINUTE
        };
        sqlx::query(
            "INSERT INTO outcomes (id, referral_id, recorded_by, kind, resource, \
             occurred_at, created_at, sealed) VALUES ($1, $2, 'cbo-north', $3, NULL, $4, $5, NULL)",
        )
        .bind(format!("{id}-o{k}"))
        .bind(id.to_owned())
        .bind((*kind).to_owned())
        .bind(at + minutes * MINUTE)
        .bind(recorded)
        .execute(&mut **tx)
        .await
        .expect("outcome");
    }
}

/// A settled month holds each referral as it stood at the cut-off: the
/// outcomes and the reassignment recorded after it are not counted, whatever
/// the live row says; and a month is settled once.
async fn a_month_settles_as_it_stood_at_its_cutoff(store: Store) {
    let cutoff = FEB + 14 * 24 * 60 * MINUTE;
    let mut tx = store.begin().await.expect("begin");
    crate::store::testing::insert_person(&mut tx).await;
    // (referral, outcomes as (kind, occurred minutes after receipt, recorded
    // before the cut-off?)), the live status the outcomes lead to.
    let referrals: [(&str, &str, Recorded); 4] = [
        (
            "q1",
            "engaged",
            &[("contacted", 5, true), ("engaged", 50, false)],
        ),
        (
            "q2",
            "closed",
            &[("contact_attempted", 5, true), ("closed", 60, false)],
        ),
        ("q3", "declined", &[("declined", 5, true)]),
        ("q4", "contacted", &[("contacted", 3, false)]),
    ];
    for (n, (id, status, outcomes)) in referrals.iter().enumerate() {
        insert_history(&mut tx, n, id, status, outcomes, cutoff).await;
    }
    tx.commit().await.expect("commit");
    settle(&store, &[("2026-01", JAN, FEB)], cutoff).await;

    let mut tx = store.begin().await.expect("begin");
    let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, status, assigned_cbo, first_contact_at - created_at \
         FROM aggregate_settled_referrals ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("settled rows");
    let expected = |id: &str, status: &str, cbo: &str, delay: Option<i64>| {
        (
            id.to_owned(),
            status.to_owned(),
            cbo.to_owned(),
            delay.map(|m| m * MINUTE),
        )
    };
    assert_eq!(
        rows,
        vec![
            expected("q1", "contacted", "cbo-north", Some(5)),
            expected("q2", "contact_attempted", "cbo-south", None),
            expected("q3", "declined", "cbo-south", None),
            expected("q4", "new", "cbo-south", None),
        ]
    );
    let again = super::settled::settle_month(
        &mut tx,
        &super::settled::MonthToSettle {
            month: "2026-01".to_owned(),
            from: JAN,
            to: FEB,
            cutoff: cutoff + 1,
        },
        cutoff + 1,
    )
    .await
    .expect("settle again");
    assert_eq!(again, None, "a settled month is never copied again");
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_settles_as_it_stood_at_its_cutoff_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("settle.db").display());
    let store = Store::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate");
    a_month_settles_as_it_stood_at_its_cutoff(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_settles_as_it_stood_at_its_cutoff_on_postgres() {
    if let Some(store) = crate::store::testing::postgres_store("settle").await {
        a_month_settles_as_it_stood_at_its_cutoff(store).await;
    }
}

#[test]
fn the_middle_delays_are_selected_whatever_their_order() {
    let mut scratch = Vec::new();
    let mut middle = |listed: &str| middle_of(listed, &mut scratch).expect("integers");
    assert_eq!(middle("30,10,20"), Some((3, 20, 1)));
    assert_eq!(middle("40,10,30,20"), Some((4, 50, 2)));
    assert_eq!(middle("7"), Some((1, 7, 1)));
    assert_eq!(middle("5,5,9,5"), Some((4, 10, 2)));
    assert_eq!(middle(""), None);
}

#[test]
fn a_delay_that_is_not_an_integer_is_an_error_not_a_median() {
    assert!(middle_of("10,x,20", &mut Vec::new()).is_err());
}
