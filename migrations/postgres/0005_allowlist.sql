-- The runtime IP allowlist (PostgreSQL). Entries are never deleted, only marked,
-- so the audit log's targets stay resolvable. Times are Unix seconds.
CREATE TABLE allowlist (
    id          BIGSERIAL PRIMARY KEY,
    cidr        TEXT NOT NULL,          -- normalised, e.g. 192.168.1.0/24, 2001:db8::/32
    description TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    deleted_at  BIGINT,
    deleted_by  TEXT
);
CREATE INDEX allowlist_live ON allowlist (deleted_at);
