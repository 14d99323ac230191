-- mss schema version 4: management API tokens (issue 8).
--
-- Only the SHA-256 of a token's secret part is stored; the full token is shown once, when it is
-- created (`mss token create`, or the admin token printed at the first server start). Entity
-- `token` in the change feed (key = id); `last_used_at` updates append no change.

CREATE TABLE tokens (
    id           TEXT NOT NULL PRIMARY KEY CHECK (id <> ''),
    name         TEXT NOT NULL DEFAULT '',
    secret_hash  TEXT NOT NULL CHECK (length(secret_hash) = 64),
    scopes       TEXT NOT NULL DEFAULT '[]',
    created_at   REAL NOT NULL DEFAULT 0,
    expires_at   REAL,
    last_used_at REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
