-- The hash-chained audit log (PostgreSQL). One row per entry; `audit_head` holds the
-- chain's end and is locked by every append, so appends form one linear chain.
-- prev_hash is UNIQUE: no two entries can share a predecessor (no fork).
CREATE TABLE audit (
    seq         BIGINT PRIMARY KEY,
    time        TEXT NOT NULL,          -- RFC 3339 UTC, e.g. 2026-11-23T01:02:03Z
    actor       TEXT NOT NULL,
    actor_addr  TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    result      TEXT NOT NULL,
    details     TEXT NOT NULL,          -- canonical JSON object
    prev_hash   TEXT NOT NULL UNIQUE,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_action ON audit (action, seq);
CREATE INDEX audit_time ON audit (time);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
