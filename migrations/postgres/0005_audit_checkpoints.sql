-- Signed checkpoints of the audit chain (gateway/src/audit/checkpoint.rs): the
-- chain head (seq, hash) at a time, signed by the gateway's Ed25519 key as a
-- compact JWS. A checkpoint is not itself a chain entry; see the module docs.
CREATE TABLE audit_checkpoints (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq  BIGINT NOT NULL,    -- the head it signs
    hash BYTEA NOT NULL,     -- the hash of entry `seq` (zeros for an empty log)
    at   BIGINT NOT NULL,    -- unix microseconds, when it was signed
    jws  TEXT NOT NULL       -- compact JWS (EdDSA) of {seq, hash, at}
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq, id);

-- Disclosure accounting pages a subject's entries in sequence order: with `seq`
-- in the index it reads them in order instead of sorting them.
DROP INDEX audit_log_subject;
CREATE INDEX audit_log_subject ON audit_log (subject_ref, seq);

-- The head's hash follows the entry the head names, in the appending
-- transaction: `append` reserves (moving `seq`) and inserts, and this keeps
-- `hash` in step, saving a statement per audited write. Once per statement:
-- only the statement holding the reserved last entry changes the head.
CREATE FUNCTION crosswalk_audit_head_hash() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head AS h SET hash = i.hash
    FROM inserted AS i
    WHERE h.id = 1 AND i.seq = h.seq;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_log_moves_head
    AFTER INSERT ON audit_log REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION crosswalk_audit_head_hash();

-- Append-only, as far as the database can enforce it. Whoever can drop a trigger
-- can still edit rows, which is what the hash chain and the signed checkpoints
-- are for; these stop accidents and casual edits.
CREATE FUNCTION crosswalk_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION crosswalk_append_only();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION crosswalk_append_only();
