-- Daily rollups of the lifecycle ledger, moved in the transaction of each ledger write, so the
-- metrics read a few rows per day instead of every row of the window (docs/api.md
-- "Metrics"). `day` is the message's creation day (unix microseconds / 86,400,000,000): a
-- cohort counts its messages whenever their stages came.
CREATE TABLE lifecycle_daily (
    account_id    TEXT NOT NULL,
    agent_email   TEXT NOT NULL,
    day           BIGINT NOT NULL,
    reason_code   TEXT NOT NULL,
    -- messages with at least one row of this reason
    messages      BIGINT NOT NULL DEFAULT 0,
    -- rows (a retried step counts each try)
    observations  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, agent_email, reason_code)
);
CREATE INDEX lifecycle_daily_agent ON lifecycle_daily (agent_email, day, reason_code);

CREATE TABLE message_daily (
    account_id   TEXT NOT NULL,
    agent_email  TEXT NOT NULL,
    day          BIGINT NOT NULL,
    -- messages made that day, and those with a ledger (every one stored since it exists)
    messages        BIGINT NOT NULL DEFAULT 0,
    with_lifecycle  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, agent_email)
);
CREATE INDEX message_daily_agent ON message_daily (agent_email, day);

-- What the ledger already holds.
INSERT INTO lifecycle_daily (account_id, agent_email, day, reason_code, messages, observations)
SELECT account_id, agent_email, message_created_at / 86400000000, reason_code, COUNT(DISTINCT message_id), COUNT(*)
FROM message_lifecycle GROUP BY account_id, agent_email, message_created_at / 86400000000, reason_code;
INSERT INTO message_daily (account_id, agent_email, day, messages, with_lifecycle)
SELECT m.account_id, m.agent_email, m.created_at / 86400000000, COUNT(DISTINCT m.id), COUNT(DISTINCT l.message_id)
FROM messages m LEFT JOIN message_lifecycle l ON l.message_id = m.id
GROUP BY m.account_id, m.agent_email, m.created_at / 86400000000;
