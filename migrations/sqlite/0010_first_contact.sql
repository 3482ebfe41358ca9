-- When each referral's person was first reached (the earliest `contacted`,
-- `engaged` or `service_connected` outcome), kept on the referral so that the
-- aggregates' median time to first contact reads one column instead of
-- searching `outcomes` once per referral (gateway/src/store/aggregates.rs).
-- Triggers keep it, so no write path can forget it.
ALTER TABLE referrals ADD COLUMN first_contact_at INTEGER; -- unix microseconds

UPDATE referrals SET first_contact_at = (
    SELECT MIN(o.occurred_at) FROM outcomes o
    WHERE o.referral_id = referrals.id
      AND o.kind IN ('contacted', 'engaged', 'service_connected')
);

CREATE TRIGGER outcomes_first_contact_insert
    AFTER INSERT ON outcomes
    WHEN NEW.kind IN ('contacted', 'engaged', 'service_connected')
BEGIN
    UPDATE referrals SET first_contact_at = NEW.occurred_at
    WHERE id = NEW.referral_id
      AND (first_contact_at IS NULL OR first_contact_at > NEW.occurred_at);
END;

CREATE TRIGGER outcomes_first_contact_update
    AFTER UPDATE OF occurred_at, kind, referral_id ON outcomes
BEGIN
    UPDATE referrals SET first_contact_at = (
        SELECT MIN(o.occurred_at) FROM outcomes o
        WHERE o.referral_id = referrals.id
          AND o.kind IN ('contacted', 'engaged', 'service_connected')
    )
    WHERE id IN (OLD.referral_id, NEW.referral_id);
END;
