-- The subject registry: pseudonymous people, the identities partners submitted
-- for them (sealed), and the keyed linkage tokens that link identities together.
-- No column holds a raw identifier.

CREATE TABLE subjects (
    id          TEXT PRIMARY KEY NOT NULL,   -- random, internal; never leaves the gateway
    created_at  BIGINT NOT NULL,            -- unix seconds
    merged_into TEXT REFERENCES subjects (id) -- set when this subject was merged away
);

CREATE TABLE identities (
    id             TEXT PRIMARY KEY NOT NULL,
    subject_id     TEXT NOT NULL REFERENCES subjects (id),
    source_partner TEXT NOT NULL,
    sealed         BYTEA NOT NULL,            -- the identity bundle, sealed by the vault
    fingerprint    BYTEA NOT NULL,            -- keyed tokens and Bloom filter (linkage engine)
    key_version    BIGINT NOT NULL,         -- master-secret version the fingerprint is under
    linkable       BIGINT NOT NULL,         -- 0: too few fields to link, never linked
    created_at     BIGINT NOT NULL
);
CREATE INDEX identities_subject ON identities (subject_id);
CREATE INDEX identities_key_version ON identities (key_version);

CREATE TABLE linkage_tokens (
    token       BYTEA NOT NULL,
    identity_id TEXT NOT NULL REFERENCES identities (id),
    key_version BIGINT NOT NULL,
    PRIMARY KEY (token, identity_id)
);
CREATE INDEX linkage_tokens_identity ON linkage_tokens (identity_id);

CREATE TABLE subject_merges (
    id           TEXT PRIMARY KEY NOT NULL,
    from_subject TEXT NOT NULL REFERENCES subjects (id),
    into_subject TEXT NOT NULL REFERENCES subjects (id),
    identity_id  TEXT NOT NULL,              -- the identity whose arrival bridged them
    merged_at    BIGINT NOT NULL
);
