-- The append sets the head's hash in its own INSERT statement (a data-modifying
-- WITH, gateway/src/store/audit.rs) instead of through the statement trigger of
-- migration 0005: the trigger cost a PL/pgSQL call, a scan of the transition
-- table and a second new version of the head row in every audited write, and
-- the one-statement append (head hint) already moves seq and hash together.
-- SQLite keeps its row trigger: there the insert is not a network round trip.
DROP TRIGGER audit_log_moves_head ON audit_log;
DROP FUNCTION crosswalk_audit_head_hash();
