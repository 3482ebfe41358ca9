-- The identifier vault's data keys (envelope encryption, see gateway/src/vault.rs).
-- Each row is one random 256-bit data key, stored only as age ciphertext to the
-- vault recipient; sealed records name the key they were sealed under by `id`.
-- Every gateway replica creates its own keys, so rows are only ever inserted
-- (by a random id) and re-wrapped, never shared or counted in the database.
CREATE TABLE vault_keys (
    id         TEXT PRIMARY KEY NOT NULL, -- UUID; its 16 bytes head every sealed record
    wrapped    BYTEA NOT NULL,            -- the data key, age-encrypted to `recipient`
    recipient  TEXT NOT NULL,             -- the age recipient `wrapped` is sealed to (age1...)
    created_at BIGINT NOT NULL,           -- unix seconds
    wrapped_at BIGINT NOT NULL            -- unix seconds `wrapped` was last written (rewrap)
);
-- A re-wrap to a new vault recipient walks the keys still under another one.
CREATE INDEX vault_keys_recipient ON vault_keys (recipient);
