-- postagent schema, PostgreSQL flavour. Timestamps are unix microseconds (BIGINT), ids are the
-- prefixed strings the API shows, JSON columns hold compact JSON text,
-- flags are BIGINT 0/1 (sqlx's Any driver, which serves both backends, cannot read a SQLite
-- BOOLEAN column). The SQLite
-- migration of the same number creates the same tables with the same columns.

CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    -- where hold notifications (magic links) go; the account email when NULL
    reviewer_email  TEXT,
    plan_code       TEXT NOT NULL DEFAULT 'selfhost',
    created_at      BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL DEFAULT '',
    key_prefix    TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    scope         TEXT NOT NULL CHECK (scope IN ('account', 'agent')),
    agent_email   TEXT,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys (account_id, created_at, id);

CREATE TABLE domains (
    domain              TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    verification_token  TEXT NOT NULL,
    verified            BIGINT NOT NULL DEFAULT 0,
    -- added by the operator with `postagent admin domains add --verified`: no TXT needed
    operator_owned      BIGINT NOT NULL DEFAULT 0,
    verified_at         BIGINT,
    last_checked_at     BIGINT,
    -- last probe results: found | missing | mismatch | deferred
    txt_status          TEXT NOT NULL DEFAULT 'pending',
    mx_status           TEXT NOT NULL DEFAULT 'pending',
    created_at          BIGINT NOT NULL
);
CREATE INDEX domains_account ON domains (account_id, created_at, domain);

CREATE TABLE agents (
    email       TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    domain      TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE INDEX agents_account ON agents (account_id, created_at, email);
CREATE INDEX agents_domain ON agents (domain);

-- Per-agent protection (inbound/outbound gates, hold defaults) as the contract's JSON.
CREATE TABLE agent_protection (
    agent_email  TEXT PRIMARY KEY REFERENCES agents(email) ON DELETE CASCADE,
    config       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    agent_email      TEXT NOT NULL,
    subject          TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    last_message_at  BIGINT NOT NULL
);
CREATE INDEX conversations_agent ON conversations (agent_email, last_message_at, id);

CREATE TABLE messages (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    agent_email          TEXT NOT NULL,
    direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- inbound: received | held | rejected; outbound: accepted | pending_review | sending |
    -- sent | failed | bounced | rejected
    status               TEXT NOT NULL,
    review_status        TEXT,
    read_status          TEXT NOT NULL DEFAULT '',
    -- the milter's message id (X-E2A-Auth-Message-Id); with the agent it makes LMTP
    -- redelivery idempotent
    source_id            TEXT,
    header_from          TEXT,
    envelope_from        TEXT,
    verified_domain      TEXT,
    to_addrs             TEXT NOT NULL DEFAULT '[]',
    cc_addrs             TEXT NOT NULL DEFAULT '[]',
    bcc_addrs            TEXT NOT NULL DEFAULT '[]',
    reply_to             TEXT NOT NULL DEFAULT '[]',
    delivered_to         TEXT NOT NULL DEFAULT '',
    subject              TEXT NOT NULL DEFAULT '',
    rfc_message_id       TEXT,
    in_reply_to          TEXT,
    references_ids       TEXT NOT NULL DEFAULT '[]',
    conversation_id      TEXT,
    labels               TEXT NOT NULL DEFAULT '[]',
    authentication       TEXT,
    raw_message          BYTEA,
    body_text            TEXT,
    body_html            TEXT,
    draft_attachments    TEXT,
    size_bytes           BIGINT NOT NULL DEFAULT 0,
    postfix_queue_id     TEXT,
    provider_message_id  TEXT,
    delivery_status      TEXT,
    delivery_detail      TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    deleted_at           BIGINT,
    UNIQUE (agent_email, source_id)
);
CREATE INDEX messages_agent ON messages (agent_email, direction, created_at, id);
CREATE INDEX messages_conversation ON messages (agent_email, conversation_id);
CREATE INDEX messages_rfc_id ON messages (agent_email, rfc_message_id);

CREATE TABLE attachments (
    message_id    TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    idx           BIGINT NOT NULL,
    filename      TEXT,
    content_type  TEXT,
    content_id    TEXT,
    size_bytes    BIGINT NOT NULL,
    PRIMARY KEY (message_id, idx)
);

-- The outbox: written in the same transaction as the change it reports.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    type         TEXT NOT NULL,
    agent_email  TEXT,
    message_id   TEXT,
    payload      TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX events_account ON events (account_id, created_at, id);

CREATE TABLE webhooks (
    id                           TEXT PRIMARY KEY,
    account_id                   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    url                          TEXT NOT NULL,
    description                  TEXT NOT NULL DEFAULT '',
    secret                       TEXT NOT NULL,
    previous_secret              TEXT,
    previous_secret_expires_at   BIGINT,
    enabled                      BIGINT NOT NULL DEFAULT 1,
    disabled_reason              TEXT,
    agent_filter                 TEXT NOT NULL DEFAULT '[]',
    event_types                  TEXT NOT NULL DEFAULT '[]',
    failing_since                BIGINT,
    created_at                   BIGINT NOT NULL,
    updated_at                   BIGINT NOT NULL
);
CREATE INDEX webhooks_account ON webhooks (account_id, created_at, id);

-- One row per (event, subscription); its tries are webhook_attempts.
CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,
    webhook_id        TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    status            TEXT NOT NULL DEFAULT 'pending',
    attempt_count     BIGINT NOT NULL DEFAULT 0,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at, id);

CREATE TABLE webhook_attempts (
    id             BIGSERIAL PRIMARY KEY,
    delivery_id    TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt        BIGINT NOT NULL,
    status_code    BIGINT,
    duration_ms    BIGINT NOT NULL,
    response_body  TEXT,
    error          TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);

-- Human-in-the-loop holds on a message, inbound or outbound.
CREATE TABLE holds (
    message_id   TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    agent_email  TEXT NOT NULL,
    direction    TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL DEFAULT 'pending',
    on_expiry    TEXT NOT NULL DEFAULT 'reject',
    expires_at   BIGINT NOT NULL,
    decided_at   BIGINT,
    decided_by   TEXT,
    reject_reason TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX holds_account ON holds (account_id, state, created_at);

CREATE TABLE idempotency_keys (
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key              TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    response_status  BIGINT,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);

-- Every work queue (webhook deliveries, submissions, hold expiry, …) is rows here. Tasks
-- carry ids, never payloads. A worker claims rows by taking a lease (locked_until,
-- locked_by); PostgreSQL additionally skips rows another transaction holds.
CREATE TABLE jobs (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    ref_id        TEXT NOT NULL,
    run_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    locked_until  BIGINT,
    locked_by     TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    UNIQUE (kind, ref_id)
);
CREATE INDEX jobs_due ON jobs (kind, run_at);
