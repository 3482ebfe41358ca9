-- The exchange (gateway/src/exchange): police referrals, their CBO assignment
-- history, CBO follow-up outcomes, health case statuses, and the idempotency keys
-- of referral submissions.
--
-- No column holds a raw identifier. The person is reached through `identity_id`
-- (the identity sealed by the subject registry) and `subject_id` (the internal
-- subject at the time of writing; after a merge, `subjects.merged_into` names the
-- survivor, so the current subject is COALESCE(subjects.merged_into, subject_id)).
-- Each record's own sensitive fields (CAD number, officer id, circumstances;
-- outcome notes; the health case reference) are sealed together by the vault
-- into its `sealed` column, bound to the row by the context `<table>:<id>`.
--
-- Times are unix MICROseconds (UTC), so that records written in one batch keep
-- their order and a queue can be paged by (created_at, id).

CREATE TABLE referrals (
    id             TEXT PRIMARY KEY NOT NULL,  -- UUID v7 (time-ordered)
    submitted_by   TEXT NOT NULL,              -- police partner id
    subject_id     TEXT NOT NULL REFERENCES subjects (id),
    identity_id    TEXT NOT NULL REFERENCES identities (id),
    assigned_cbo   TEXT NOT NULL,              -- CBO partner id (history: referral_assignments)
    status         TEXT NOT NULL,              -- new, contact_attempted, ... (exchange::status)
    workflow_state TEXT NOT NULL,              -- open or closed: what police see
    contact_at     BIGINT NOT NULL,
    district       TEXT NOT NULL,              -- a district/beat code (restricted alphabet)
    arrested       BIGINT,                    -- 0/1; NULL when not given
    resources      TEXT NOT NULL,              -- JSON array of category codes, as requested
    follow_up_by   TEXT,                       -- cbo or officer; NULL when not given
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    sealed         BYTEA                        -- {cad_number, officer_id, circumstances}; NULL if none given
);
-- A CBO's queue, newest first, optionally by status, paged by (created_at, id).
CREATE INDEX referrals_queue ON referrals (assigned_cbo, created_at, id);
CREATE INDEX referrals_queue_status ON referrals (assigned_cbo, status, created_at, id);
-- A police department's own submissions.
CREATE INDEX referrals_submitted ON referrals (submitted_by, created_at, id);
-- Everything about one subject (case-status linkage, accounting of disclosures).
CREATE INDEX referrals_subject ON referrals (subject_id);

-- The requested categories once more, one row each, so that aggregates can
-- GROUP BY resource with the same SQL on both backends (no JSON functions).
-- Written with the referral and never changed.
CREATE TABLE referral_resources (
    referral_id TEXT NOT NULL REFERENCES referrals (id),
    resource    TEXT NOT NULL,
    PRIMARY KEY (referral_id, resource)
);
CREATE INDEX referral_resources_resource ON referral_resources (resource, referral_id);

-- Every assignment of a referral to a CBO: the first (how it was routed) and each
-- reassignment (who asked, why). The referral's assigned_cbo is the last row's to_cbo.
CREATE TABLE referral_assignments (
    id          TEXT PRIMARY KEY NOT NULL,
    referral_id TEXT NOT NULL REFERENCES referrals (id),
    from_cbo    TEXT,                          -- NULL for the first assignment
    to_cbo      TEXT NOT NULL,
    cause       TEXT NOT NULL,                 -- submitted, declined (by the CBO), admin
    route       TEXT NOT NULL,                 -- explicit, rule, default: how to_cbo was chosen
    rule_index  BIGINT,                       -- the routing rule (0-based) when route = rule
    reason      TEXT,                          -- a reason code for reassignments (capacity, ...)
    assigned_by TEXT NOT NULL,                 -- partner id that caused it
    at          BIGINT NOT NULL
);
CREATE INDEX referral_assignments_referral ON referral_assignments (referral_id, at);

-- A CBO's follow-up outcomes. They drive the referral's status.
CREATE TABLE outcomes (
    id          TEXT PRIMARY KEY NOT NULL,
    referral_id TEXT NOT NULL REFERENCES referrals (id),
    recorded_by TEXT NOT NULL,                 -- the CBO partner id
    kind        TEXT NOT NULL,
    resource    TEXT,                          -- for service_connected
    occurred_at BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    sealed      BYTEA                           -- {notes}; NULL when no notes
);
CREATE INDEX outcomes_referral ON outcomes (referral_id, occurred_at, id);
CREATE INDEX outcomes_recorded ON outcomes (recorded_by, created_at, id);

-- A health partner's case statuses, one row per status report.
CREATE TABLE cases (
    id           TEXT PRIMARY KEY NOT NULL,
    submitted_by TEXT NOT NULL,                -- health partner id
    subject_id   TEXT NOT NULL REFERENCES subjects (id),
    identity_id  TEXT NOT NULL REFERENCES identities (id),
    case_key     BYTEA NOT NULL,                -- keyed hash of (partner, case_ref): groups one case's reports
    program      TEXT NOT NULL,
    status       TEXT NOT NULL,
    part2        BIGINT NOT NULL,             -- 1: 42 CFR Part 2 (substance_use program)
    effective_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    sealed       BYTEA NOT NULL                 -- {case_ref}
);
CREATE INDEX cases_subject ON cases (subject_id);
CREATE INDEX cases_case ON cases (submitted_by, case_key, effective_at);

-- Idempotency keys of referral submissions. Both the key and the body are stored
-- only as keyed hashes (a client may well use a CAD number as its key, and a
-- plain hash of a body of identifiers could be reversed by guessing).
CREATE TABLE idempotency_keys (
    key_hash    BYTEA PRIMARY KEY NOT NULL,     -- keyed hash of (partner, key[, batch line])
    partner     TEXT NOT NULL,
    body_hash   BYTEA NOT NULL,                 -- keyed hash of the request body (or batch line)
    referral_id TEXT NOT NULL REFERENCES referrals (id),
    response    TEXT NOT NULL,                 -- the first response (ids and codes only)
    created_at  BIGINT NOT NULL
);
