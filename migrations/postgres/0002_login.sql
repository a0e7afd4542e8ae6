-- The browser login flow (PostgreSQL): what a session needs from the IdP after login.
-- Tokens are sealed (AES-256-GCM with a key derived from the session secret),
-- never stored in the clear.
ALTER TABLE sessions ADD COLUMN id_token TEXT;        -- sealed; the id_token_hint at logout
ALTER TABLE sessions ADD COLUMN refresh_token TEXT;   -- sealed; absent when the IdP gave none
ALTER TABLE sessions ADD COLUMN refresh_at BIGINT;    -- refresh from this time on (before the access token expires)
