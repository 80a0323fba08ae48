-- Fan-out: the event log's state, webhook filters and health, and the delivery log's
-- schedule. Same columns as the PostgreSQL migration of the same number.

-- pending | processed (matched at least one webhook) | no_match
ALTER TABLE events ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE events ADD COLUMN conversation_id TEXT;
-- Test deliveries (POST /v1/webhooks/{id}/test) are events too, but not part of the log.
ALTER TABLE events ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_message ON events (message_id);

ALTER TABLE webhooks ADD COLUMN conversation_filter TEXT NOT NULL DEFAULT '[]';
ALTER TABLE webhooks ADD COLUMN label_filter TEXT NOT NULL DEFAULT '[]';
ALTER TABLE webhooks ADD COLUMN auto_disabled_at INTEGER;
ALTER TABLE webhooks ADD COLUMN last_delivered_at INTEGER;

ALTER TABLE webhook_deliveries ADD COLUMN event_type TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_deliveries ADD COLUMN next_retry_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN last_attempt_at INTEGER;
-- 1 for a manual redelivery (POST /v1/events/{id}/redeliver)
ALTER TABLE webhook_deliveries ADD COLUMN redelivery INTEGER NOT NULL DEFAULT 0;
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id, webhook_id);
