-- De-identified exports for evaluator studies (gateway/src/exports).
--
-- `exports` records each export: who asked, for which study, what it contains
-- and, once built, where the age-encrypted file is and the signed manifest.
-- `export_subjects` lists the internal subjects an export discloses, so that the
-- accounting of disclosures can find the export's one audit entry for each
-- person (the entry references the export by `record_id`). No identifier here.

CREATE TABLE exports (
    id             TEXT PRIMARY KEY NOT NULL,  -- UUID v7
    study_id       TEXT NOT NULL,
    requested_by   TEXT NOT NULL,              -- the evaluator partner id
    purpose        TEXT NOT NULL,
    request        TEXT NOT NULL,              -- JSON: from, to, tables, format
    state          TEXT NOT NULL,              -- running, ready, failed
    requested_at   BIGINT NOT NULL,            -- unix microseconds
    finished_at    BIGINT,
    file_name      TEXT,                       -- under exports.dir, once ready
    manifest_jws   TEXT                        -- the signed manifest, once ready
);
CREATE INDEX exports_requested_by ON exports (requested_by, requested_at);

CREATE TABLE export_subjects (
    export_id  TEXT NOT NULL REFERENCES exports (id),
    subject_id TEXT NOT NULL,
    PRIMARY KEY (subject_id, export_id)
);
