-- Published months are fixed (issue 15 point 5; gateway/src/aggregates/settle.rs).
--
-- A month is settled once, `aggregates.settle_days` after it ends: every
-- referral it received is copied here with its groupings as they stood at the
-- cut-off (its status and first contact from the outcomes recorded by then,
-- the CBO it was assigned to then). Every table of a settled month is counted
-- from these rows alone, so it is the same for every asker and never moves,
-- whatever is recorded later.
CREATE TABLE aggregate_settled_months (
    month      TEXT PRIMARY KEY NOT NULL,  -- YYYY-MM (UTC)
    cutoff     BIGINT NOT NULL,            -- unix microseconds: nothing recorded after it counts
    settled_at BIGINT NOT NULL,            -- when the copy was made (at or after the cut-off)
    referrals  BIGINT NOT NULL
);

-- One row per referral of a settled month (the columns the aggregates read,
-- nothing that identifies anyone). The index mirrors referrals_aggregate: a
-- month's counts and delays are read from the index alone.
CREATE TABLE aggregate_settled_referrals (
    id               TEXT PRIMARY KEY NOT NULL,  -- the referral (joins referral_resources)
    created_at       BIGINT NOT NULL,
    district         TEXT NOT NULL,
    status           TEXT NOT NULL,              -- as of the cut-off
    assigned_cbo     TEXT NOT NULL,              -- as of the cut-off
    first_contact_at BIGINT                      -- as of the cut-off; NULL: none by then
);
CREATE INDEX aggregate_settled_referrals_month
    ON aggregate_settled_referrals (created_at, district, status, assigned_cbo, first_contact_at);

-- With differential privacy on: each month's noisy table per grouping and
-- epsilon, made once and then served to every asker, so no month can be
-- re-asked for fresh noise. `counts` holds the noised interior cells (JSON
-- array, row-major over `categories`); suppression is re-run on them, which
-- is deterministic post-processing.
CREATE TABLE aggregate_noisy_tables (
    month         TEXT NOT NULL,
    grouping      TEXT NOT NULL,               -- e.g. district,outcome ('' for month alone)
    epsilon_micro BIGINT NOT NULL,
    categories    TEXT NOT NULL,               -- JSON: each grouping's categories
    counts        TEXT NOT NULL,               -- JSON: the noisy interior counts
    made_at       BIGINT NOT NULL,
    PRIMARY KEY (month, grouping, epsilon_micro)
);

-- The DP budget is charged to the month of data, one cap per month across all
-- partners (aggregates.dp.epsilon_per_month), in millionths. It replaces the
-- per-partner budget of the month of asking, which let one past month be
-- re-asked every new month (and by every partner) with fresh epsilon.
-- aggregate_budget_ledger stays: its `period` is now the data month.
CREATE TABLE aggregate_month_budgets (
    month       TEXT PRIMARY KEY NOT NULL,
    spent_micro BIGINT NOT NULL
);
DROP TABLE aggregate_budgets;
