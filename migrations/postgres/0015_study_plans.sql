-- A study's generalization plan (gateway/src/exports/plan.rs, issue 15): the
-- levels every export of the study is generalized to, fixed once, by the first
-- export to finish, in the transaction of its disclosure and of its
-- `export.plan` audit entry; every later export reuses it and suppresses what
-- does not reach k instead of choosing other levels. Exports over different
-- windows then show every referral with the same values, so that joining them
-- reveals nothing a single export of the union could not. The study's settings
-- it was made under are kept, so that a changed study is refused rather than
-- silently re-planned. No identifier here.

CREATE TABLE study_plans (
    study_id          TEXT PRIMARY KEY NOT NULL,
    mode              TEXT NOT NULL,     -- safe_harbor or limited_data_set, when planned
    quasi_identifiers TEXT NOT NULL,     -- as configured when planned, comma-separated
    k                 BIGINT NOT NULL,
    levels            TEXT NOT NULL,     -- JSON {"age": 1, ...}, per quasi-identifier
    reference_date    TEXT NOT NULL,     -- YYYY-MM-DD: ages are ages on this day
    planned_by        TEXT NOT NULL REFERENCES exports (id),
    planned_at        BIGINT NOT NULL    -- unix microseconds
);

-- A plan never changes: that is the guarantee.
CREATE TRIGGER study_plans_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON study_plans
    FOR EACH STATEMENT EXECUTE FUNCTION crosswalk_append_only();
