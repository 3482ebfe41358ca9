-- Consent records (issue 7; gateway/src/exchange/consent.rs): the person's
-- recorded consent to share, attached to their subject so that it follows every
-- record linked to them (a consent recorded on a health case covers the
-- referral about the same person, and merges are followed when reading).
--
-- No column holds an identifier or free text. `evidence_hash` is the hash of
-- the signed form as the recorder computed it (the form itself is not stored);
-- recipients, purposes, classes and the Part 2 recipients are JSON arrays of
-- codes and partner ids. Times are unix MICROseconds (UTC), like the exchange.

CREATE TABLE consents (
    id               TEXT PRIMARY KEY NOT NULL,  -- UUID v7
    subject_id       TEXT NOT NULL REFERENCES subjects (id),
    referral_id      TEXT REFERENCES referrals (id),  -- recorded by a CBO on its referral...
    case_id          TEXT REFERENCES cases (id),      -- ...or by a health partner on its case
    recorded_by      TEXT NOT NULL,              -- partner id
    method           TEXT NOT NULL,              -- written, verbal, electronic
    recipients       TEXT NOT NULL,              -- JSON array: partner ids and/or kinds
    purposes         TEXT NOT NULL,              -- JSON array: HL7 PurposeOfUse codes
    classes          TEXT NOT NULL,              -- JSON array: catalog field classes
    part2_recipients TEXT NOT NULL,              -- JSON array: partner ids named under 42 CFR Part 2 ([] if none)
    part2            BIGINT NOT NULL,           -- 1: a 42 CFR Part 2 consent (covers substance_use)
    period_start     BIGINT NOT NULL,
    period_end       BIGINT NOT NULL,
    evidence_hash    TEXT NOT NULL,              -- `sha256:` or `blake3:` and 64 hex digits
    created_at       BIGINT NOT NULL,
    revoked_at       BIGINT,                    -- NULL while not revoked
    revoked_by       TEXT,
    CHECK ((referral_id IS NULL) <> (case_id IS NULL)),
    CHECK (period_end > period_start)
);
-- The active consents of one person (every subject of theirs), at every read.
CREATE INDEX consents_subject ON consents (subject_id, revoked_at);
-- What a partner recorded (the accounting of disclosures for its consents).
CREATE INDEX consents_recorded ON consents (recorded_by, subject_id);
