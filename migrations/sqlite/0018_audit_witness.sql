-- Delivery of signed checkpoints to outside witnesses (gateway/src/audit/witness.rs):
-- per witness (`command` or `https`), the last checkpoint it accepted. The lines
-- of the checkpoints after it are sent in order until each is accepted, so a
-- restart resumes where delivery stopped and no undelivered line is lost.
-- Replicas share the cursor; two of them may both send one line, which a
-- witness accepts again (a line is the same signed JWS every time).
CREATE TABLE audit_witness_cursors (
    witness      TEXT PRIMARY KEY NOT NULL,  -- command or https
    delivered_id INTEGER NOT NULL,           -- audit_checkpoints.id last accepted (0: none)
    at           INTEGER NOT NULL            -- unix microseconds, when it moved
);
