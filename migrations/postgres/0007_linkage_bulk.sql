-- Linkage tokens stored for bulk registration (SubjectRegistry::register_many).
--
-- Each identity writes about fourteen token rows, each at a random place in the
-- token indexes; at hundreds of identities per transaction the index inserts,
-- not the statements, are the cost. The index on identity_id goes: no query
-- reads tokens by identity (rotation deletes by key_version, lookups go by
-- token), and it cost one random B-tree insert per token. Whoever adds a
-- deletion of identities must delete their tokens by (token, identity_id),
-- which the identity's fingerprint lists, and should know that deleting an
-- identity row makes the foreign-key check scan this table for references.
-- (SQLite's version of this migration also makes the table WITHOUT ROWID;
-- PostgreSQL has no such layout.)

DROP INDEX linkage_tokens_identity;
