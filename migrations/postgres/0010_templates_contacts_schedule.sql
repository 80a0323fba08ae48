-- Stored templates (docs/api.md "Templates"): an account's, its alias unique within it.
CREATE TABLE templates (
    id                    TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    alias                 TEXT,
    name                  TEXT NOT NULL,
    subject               TEXT NOT NULL,
    text_body             TEXT NOT NULL,
    html_body             TEXT,
    from_starter_alias    TEXT,
    from_starter_version  TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX templates_alias ON templates (account_id, alias);
CREATE INDEX templates_account ON templates (account_id, created_at, id);

-- Contacts (docs/api.md "Contacts"): the account's people, keyed by canonical address.
CREATE TABLE contacts (
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address          TEXT NOT NULL,
    display_name     TEXT NOT NULL DEFAULT '',
    metadata         TEXT NOT NULL DEFAULT '{}',
    source           TEXT NOT NULL,
    import_batch_id  TEXT,
    -- set by any write after the import that created it: a reversal keeps such contacts
    edited           BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (account_id, address)
);
CREATE INDEX contacts_account ON contacts (account_id, created_at, address);

-- One agent's outreach with a contact; the counters are derived from messages on read.
CREATE TABLE contact_engagements (
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    agent_email      TEXT NOT NULL,
    address          TEXT NOT NULL,
    stage            TEXT NOT NULL DEFAULT '',
    metadata         TEXT NOT NULL DEFAULT '{}',
    next_action_at   BIGINT,
    import_batch_id  TEXT,
    edited           BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (agent_email, address)
);
CREATE INDEX contact_engagements_agent ON contact_engagements (agent_email, created_at, address);

-- Scheduled send: the instant a future send_at asked for (kept after it is sent).
ALTER TABLE messages ADD COLUMN scheduled_at BIGINT;
