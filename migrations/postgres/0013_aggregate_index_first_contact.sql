-- The aggregates read, per calendar month, each referral's groupings and its
-- delay to first contact (gateway/src/store/aggregates.rs). With
-- `first_contact_at` in the index the query with medians reads the index
-- alone, like the counts without medians already did, instead of looking up
-- every referral of the month in the table.
DROP INDEX referrals_aggregate;
CREATE INDEX referrals_aggregate
    ON referrals (created_at, district, status, assigned_cbo, first_contact_at);
