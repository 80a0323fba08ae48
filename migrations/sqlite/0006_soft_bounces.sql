-- Soft bounces (a DSN whose failure status is 4.x.x), one row per outbound message and
-- recipient, kept for `suppress_after_soft_bounces`: when an agent's last N messages to an
-- address all soft-bounced, the address joins the account's suppression list. The janitor
-- drops rows past the window a run is looked for in; lifting the suppression drops the run.
CREATE TABLE soft_bounces (
    account_id TEXT NOT NULL,
    address TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, address, message_id)
);
CREATE INDEX soft_bounces_age ON soft_bounces (created_at);
