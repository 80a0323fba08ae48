-- The console (docs/console.md). A sign-in link asked for by email is one row here; the link
-- carries the row id and an HMAC of it under the deployment secret, so nothing stored signs
-- anyone in. One use, fifteen minutes.
CREATE TABLE console_logins (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX console_logins_age ON console_logins (expires_at);

-- A signed-in browser. The cookie holds a random token; only its SHA-256 is stored. A session
-- ends at expires_at (absolute), after console_session_idle without a request, or when revoked.
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    signed_in_as TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX console_sessions_account ON console_sessions (account_id, created_at);
CREATE INDEX console_sessions_age ON console_sessions (expires_at);

-- An agent's mail in both directions, newest first (the console's inbox, `direction=all` on
-- /v1): without it every page sorts all of the agent's messages.
CREATE INDEX messages_agent_time ON messages (agent_email, created_at, id);
