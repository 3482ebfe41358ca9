-- Partner clusters (issue 15 point 3; gateway/src/subjects/clusters.rs): a
-- partner's pseudonym of a person is the keyed hash of that partner's own
-- cluster of the record's identity — the identities it holds, grouped by the
-- linkage rule among themselves — so that another partner's record can never
-- be the bridge that gives two of its records one pseudonym.
--
-- Who holds an identity: the partner that submitted it (`source_partner`,
-- police or health), and the CBO its referral is assigned to. Both clusters
-- live on the identity row (no row of their own, to keep the intake's writes
-- per referral as they were). Cluster ids are random internal ids (UUID v7,
-- so the smallest is the oldest); a merge moves the merged cluster's
-- identities, all of which sit on one subject, to the surviving id.
--
-- Rows written before this migration have no cluster (NULL): the gateway
-- computes them at start-up, before it serves (subjects/backfill.rs), with the
-- same rule the intake uses. `identities_unclustered` holds only those rows,
-- so it is empty, and costs nothing, once that is done.

ALTER TABLE identities ADD COLUMN cluster_id TEXT;          -- source_partner's cluster
ALTER TABLE identities ADD COLUMN assigned_cbo TEXT;        -- the CBO holding it (its referral's)
ALTER TABLE identities ADD COLUMN cbo_cluster_id TEXT;      -- that CBO's cluster

-- The CBO of each existing referral's identity. A temporary index: nothing
-- else reads referrals by identity, and every referral would pay for it.
CREATE INDEX referrals_identity_0017 ON referrals (identity_id);
UPDATE identities SET assigned_cbo =
    (SELECT r.assigned_cbo FROM referrals r WHERE r.identity_id = identities.id);
DROP INDEX referrals_identity_0017;

CREATE INDEX identities_unclustered ON identities (created_at, id) WHERE cluster_id IS NULL;
