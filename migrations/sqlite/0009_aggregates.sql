-- Aggregates (gateway/src/aggregates): what GET /v1/aggregates/outcomes needs.
--
-- The counts are GROUP BYs over one calendar month of `referrals.created_at` at a
-- time (month boundaries are computed in Rust and passed as parameters), so the
-- index leads with created_at and covers every column a table can group by: a
-- month's counts are read from the index alone.
CREATE INDEX referrals_aggregate ON referrals (created_at, district, status, assigned_cbo);
-- Time to first contact: the earliest contacted/engaged/service_connected
-- outcome of each referral, found by index.
CREATE INDEX outcomes_first_contact ON outcomes (referral_id, kind, occurred_at);

-- The differential-privacy budget: epsilon spent per partner per calendar month
-- (UTC, 'YYYY-MM'), in millionths so that both backends add integers. One row
-- per partner and period; a spend is one conditional UPDATE
-- (spent + e <= the period's budget), so concurrent requests and replicas can
-- never overspend.
CREATE TABLE aggregate_budgets (
    partner     TEXT NOT NULL,
    period      TEXT NOT NULL,
    spent_micro INTEGER NOT NULL,
    PRIMARY KEY (partner, period)
);

-- Every spend, as a ledger: what was asked (the query's shape, never a count)
-- and how much it cost. Written in the transaction that moves the budget and
-- appends the aggregate.read audit entry.
CREATE TABLE aggregate_budget_ledger (
    id            TEXT PRIMARY KEY NOT NULL,   -- UUID v7
    partner       TEXT NOT NULL,
    period        TEXT NOT NULL,
    epsilon_micro INTEGER NOT NULL,
    query         TEXT NOT NULL,               -- JSON: from, to, group_by
    at            INTEGER NOT NULL             -- unix microseconds
);
CREATE INDEX aggregate_budget_ledger_partner ON aggregate_budget_ledger (partner, period, at);
