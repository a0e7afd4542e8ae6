-- Brute-force regulation (PostgreSQL): bans of client addresses or users after
-- repeated refused credentials. Times are Unix seconds.
CREATE TABLE bans (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('ip', 'user')),
    value       TEXT NOT NULL,          -- the canonical address, or the user name
    reason      TEXT NOT NULL,          -- the last failure's reason code
    failures    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    lifted_at   BIGINT,
    lifted_by   TEXT
);
CREATE INDEX bans_live ON bans (lifted_at, expires_at);
