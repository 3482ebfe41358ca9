-- The audit log (gateway/src/audit): append-only and hash-chained. Each entry's
-- `hash` is BLAKE3 over the previous entry's hash and this row's columns, so an
-- edited, removed, inserted or reordered row breaks every hash after it.
-- No column holds an identifier, a token or free text: subjects appear by their
-- internal reference, records by their gateway ids.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY NOT NULL, -- 1, 2, 3, ... without gaps
    at             INTEGER NOT NULL,             -- unix microseconds
    actor          TEXT NOT NULL,                -- partner id, or `gateway` / `operator`
    action         TEXT NOT NULL,                -- e.g. referral.create, disclosure, refusal
    purpose        TEXT,                         -- HL7 PurposeOfUse code
    resource       TEXT,
    record_id      TEXT,
    subject_ref    TEXT,                         -- internal subject id (never leaves as-is)
    fields         TEXT NOT NULL,                -- JSON [[field, how], ...] released
    policy_version TEXT,
    reason         TEXT,
    consent_id     TEXT,
    detail         TEXT,                         -- JSON of codes and counts, never free text
    hash           BLOB NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject_ref);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- The chain head: one row, updated in the transaction of every append, so that
-- appends from any number of connections and replicas serialize on it.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
