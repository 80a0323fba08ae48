-- Retention (docs/storage.md): the janitor purges the trash after trash_retention_days and,
-- with message_retention_days, drops old bodies. Both walk these indexes in bounded batches.
CREATE INDEX messages_trashed ON messages (deleted_at) WHERE deleted_at IS NOT NULL;
-- Only rows that still have a body: the bodies' purge never re-reads what it emptied.
CREATE INDEX messages_with_body ON messages (created_at) WHERE raw_message IS NOT NULL OR draft IS NOT NULL;
-- The account export walks an account's messages in (created_at, id) order.
CREATE INDEX messages_account ON messages (account_id, created_at, id);
CREATE INDEX agents_trashed ON agents (deleted_at) WHERE deleted_at IS NOT NULL;

-- Work that one replica should do at a time (the retention purges): a lease, taken when free
-- or expired, renewed by its holder.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
