-- Suppressed recipients. Same columns as the SQLite migration of the same number.
-- agent_email '' is the account-level list (bounces, complaints, the operator); otherwise the
-- agent's own list (manual blocks, unsubscribes). Addresses are stored lowercase.
CREATE TABLE suppressions (
    account_id TEXT NOT NULL,
    agent_email TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL,
    -- bounce | complaint | manual | unsubscribe
    source TEXT NOT NULL,
    reason TEXT,
    source_message_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, agent_email, address)
);
CREATE INDEX suppressions_page ON suppressions (account_id, agent_email, created_at, address);
