-- Outbound mail and human review. Same columns as the PostgreSQL migration of the same number.

-- send | reply | forward (outbound); '' for inbound
ALTER TABLE messages ADD COLUMN message_type TEXT NOT NULL DEFAULT '';
-- smtp | loopback (outbound)
ALTER TABLE messages ADD COLUMN method TEXT;
ALTER TABLE messages ADD COLUMN sent_as TEXT;
-- What the agent asked to send (JSON: recipients with display names, subject, bodies,
-- attachments, threading headers). Kept for review, approval edits and resubmission.
ALTER TABLE messages ADD COLUMN draft TEXT;
-- permanent | transient | undetermined, from a delivery status notification
ALTER TABLE messages ADD COLUMN bounce_type TEXT;
ALTER TABLE messages ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN flag_reason TEXT;
CREATE INDEX messages_provider_id ON messages (provider_message_id);

-- The expiry sweep walks pending holds by deadline.
CREATE INDEX holds_expiry ON holds (state, expires_at);
