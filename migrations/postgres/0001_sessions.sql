-- Server-side sessions and token revocations (PostgreSQL). Times are Unix seconds.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,      -- SHA-256 (hex) of the cookie value; the value is never stored
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,         -- sub
    username      TEXT NOT NULL,         -- preferred_username, else sub
    groups        TEXT NOT NULL,         -- JSON array of roles and groups
    email         TEXT,
    name          TEXT,
    acr           TEXT,
    amr           TEXT NOT NULL,         -- JSON array
    auth_time     BIGINT,
    sid           TEXT,                  -- the IdP's session id (back-channel logout)
    client_addr   TEXT,
    user_agent    TEXT,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,       -- absolute lifetime
    terminated_at BIGINT,
    terminated_by TEXT
);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_sid ON sessions (sid);
CREATE INDEX sessions_live ON sessions (terminated_at, expires_at);

-- Bearer tokens stop working when a matching revocation exists: by the IdP
-- session (kind 'sid') or by user (kind 'sub': tokens issued before not_before).
CREATE TABLE revocations (
    id          BIGSERIAL PRIMARY KEY,
    issuer      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('sid', 'sub')),
    value       TEXT NOT NULL,
    not_before  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL          -- after this no token it could match is alive
);
CREATE INDEX revocations_live ON revocations (expires_at);
