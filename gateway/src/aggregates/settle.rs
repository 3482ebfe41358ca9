//! Settling months: a month's tables are counted once from a fixed copy of its
//! referrals as they stood at its cut-off (`aggregates.settle_days` after the
//! month ends), so a published month never moves.
//!
//! Before its cut-off a month is refused like the current one (the request
//! parser names `to` and says when it settles). The first request after the
//! cut-off that covers the month settles it, in one write transaction per
//! month with its `aggregate.settle` audit entry; the copy is worked out from
//! the history as of the cut-off ([`crate::store::aggregates::settled`]), so
//! it does not matter when, or by whom, it is made: nothing recorded after the
//! cut-off ever counts. Replicas settling the same month at once serialize on
//! the month's row; the loser copies nothing.

use serde_json::json;

use super::{AggregateError, Month};
use crate::audit::{self, Event};
use crate::clock::Clock;
use crate::store::Store;
use crate::store::aggregates::settled::{self, MonthToSettle};

/// The action of the audit entry that records a month's settling.
pub const SETTLE_ACTION: &str = "aggregate.settle";

const DAY_MICROS: i64 = 86_400_000_000;

impl Month {
    /// The instant after which nothing recorded counts in this month's
    /// tables: `settle_days` after the month ends (unix microseconds).
    pub fn cutoff_micros(self, settle_days: u32) -> i64 {
        self.next().start_micros() + i64::from(settle_days) * DAY_MICROS
    }
}

/// Settles every month of `months` that is not settled yet (each must be past
/// its cut-off: the parser refuses the others).
pub(super) async fn settle_months(
    store: &Store,
    clock: &dyn Clock,
    settle_days: u32,
    months: &[Month],
) -> Result<(), AggregateError> {
    let names: Vec<String> = months.iter().map(ToString::to_string).collect();
    let mut tx = store.begin_read().await?;
    let settled = settled::settled_among(&mut tx, &names).await?;
    tx.commit().await?;
    let mut copied = false;
    for month in months {
        let name = month.to_string();
        if settled.contains(&name) {
            continue;
        }
        let now = clock.now();
        let mut tx = store.begin().await?;
        let to_settle = MonthToSettle {
            month: name.clone(),
            from: month.start_micros(),
            to: month.next().start_micros(),
            cutoff: month.cutoff_micros(settle_days),
        };
        let Some(referrals) =
            settled::settle_month(&mut tx, &to_settle, audit::micros(now)).await?
        else {
            // Another request settled it meanwhile.
            tx.rollback().await?;
            continue;
        };
        let entry = Event::new(audit::GATEWAY_ACTOR, SETTLE_ACTION)
            .with_resource("referral")
            .with_detail(json!({
                "month": name,
                "cutoff": to_settle.cutoff,
                "referrals": referrals,
            }));
        audit::append(&mut tx, &[entry], clock).await?;
        tx.commit().await?;
        copied = true;
    }
    if copied {
        settled::tidy_after_settling(store).await?;
    }
    Ok(())
}
