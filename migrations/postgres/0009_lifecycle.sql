-- The message lifecycle ledger (docs/api.md "Lifecycle"): one row per stage, written in the
-- transaction of the change it records; gone with its message.
CREATE TABLE message_lifecycle (
    id               TEXT PRIMARY KEY,
    message_id       TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    account_id       TEXT NOT NULL,
    agent_email      TEXT NOT NULL,
    direction        TEXT NOT NULL,
    recipient        TEXT,
    stage            TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    reason_code      TEXT NOT NULL,
    retryable        BIGINT NOT NULL DEFAULT 0,
    evidence         TEXT NOT NULL DEFAULT '{}',
    correlation_ids  TEXT NOT NULL DEFAULT '{}',
    occurred_at      BIGINT NOT NULL,
    -- the message's created_at: metrics count a cohort of messages by when they were made
    message_created_at BIGINT NOT NULL
);
CREATE INDEX message_lifecycle_message ON message_lifecycle (message_id, occurred_at, id);
-- The metrics read an account's (or an agent's) cohort of messages, counting by reason:
-- covering indexes, so a dashboard's query never touches the table.
CREATE INDEX message_lifecycle_account
    ON message_lifecycle (account_id, message_created_at, agent_email, reason_code, message_id);
CREATE INDEX message_lifecycle_agent
    ON message_lifecycle (agent_email, message_created_at, reason_code, message_id);
