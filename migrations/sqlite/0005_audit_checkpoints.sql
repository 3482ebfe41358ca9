-- Signed checkpoints of the audit chain (gateway/src/audit/checkpoint.rs): the
-- chain head (seq, hash) at a time, signed by the gateway's Ed25519 key as a
-- compact JWS. A checkpoint is not itself a chain entry; see the module docs.
CREATE TABLE audit_checkpoints (
    id   INTEGER PRIMARY KEY NOT NULL,
    seq  INTEGER NOT NULL,   -- the head it signs
    hash BLOB NOT NULL,      -- the hash of entry `seq` (zeros for an empty log)
    at   INTEGER NOT NULL,   -- unix microseconds, when it was signed
    jws  TEXT NOT NULL       -- compact JWS (EdDSA) of {seq, hash, at}
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq, id);

-- Disclosure accounting pages a subject's entries in sequence order: with `seq`
-- in the index it reads them in order instead of sorting them.
DROP INDEX audit_log_subject;
CREATE INDEX audit_log_subject ON audit_log (subject_ref, seq);

-- The head's hash follows the entry the head names, in the appending
-- transaction: `append` reserves (moving `seq`) and inserts, and this keeps
-- `hash` in step, saving a statement per audited write.
CREATE TRIGGER audit_log_moves_head AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1 AND seq = NEW.seq;
END;

-- Append-only, as far as the database can enforce it. Whoever can drop a trigger
-- can still edit rows, which is what the hash chain and the signed checkpoints
-- are for; these stop accidents and casual edits.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
