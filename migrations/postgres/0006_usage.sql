-- Usage counters (PostgreSQL): decisions per minute by user, host, rule, result and
-- reason, written in batches from memory (never a write per request).
CREATE TABLE usage (
    bucket   BIGINT NOT NULL,          -- start of the minute, Unix seconds
    username TEXT NOT NULL,            -- '' for anonymous requests
    host     TEXT NOT NULL,
    rule     BIGINT NOT NULL,          -- index in access.rules, -1 for the default policy
    result   TEXT NOT NULL,            -- allow, unauthenticated, forbidden
    reason   TEXT NOT NULL,
    count    BIGINT NOT NULL,
    PRIMARY KEY (bucket, username, host, rule, result, reason)
);
