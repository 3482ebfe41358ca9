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
