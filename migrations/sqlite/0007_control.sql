-- Control state (sqlite) shared by every gatehouse on this store: whether the kill
-- switch's deny is engaged, and the last kill switch run (JSON), so that a
-- restart or another replica sees what was pressed.
CREATE TABLE control_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
