-- mss schema version 1: users, bindings, the change feed, key/value, bans, call records.
--
-- Applied by mss.storage.sqlite inside one transaction together with PRAGMA user_version = 1.
-- Conventions: times are wall-clock epoch seconds (REAL); JSON columns hold compact JSON text
-- (objects for ha1/extra, arrays for allow_ips/path/users); booleans are 0/1. No STRICT tables
-- and no JSON functions, so that any SQLite >= 3.24 shipped with Python 3.10 will do.

-- Local users, keyed by number. The plain password is never stored: ha1 maps a digest
-- algorithm ("MD5", "SHA-256") to the HA1 hex computed for `realm`.
CREATE TABLE users (
    number       TEXT    NOT NULL PRIMARY KEY CHECK (number <> ''),
    name         TEXT    NOT NULL DEFAULT '',
    ha1          TEXT    NOT NULL DEFAULT '{}',
    realm        TEXT    NOT NULL DEFAULT '',
    multi_device INTEGER NOT NULL DEFAULT 0,
    max_devices  INTEGER NOT NULL DEFAULT 3,
    allow_ips    TEXT    NOT NULL DEFAULT '[]',
    max_calls    INTEGER,
    max_outgoing INTEGER,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    extra        TEXT    NOT NULL DEFAULT '{}'
);

-- Registrar bindings. One AOR's set is always replaced as a whole (DELETE + INSERT in one
-- transaction); `pos` keeps the order the registrar gave. No foreign key to users: a REGISTER
-- batch must never fail because the CLI deleted one of its users meanwhile (users.add drops
-- such leftovers instead).
CREATE TABLE bindings (
    aor           TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    pos           INTEGER NOT NULL,
    expires_at    REAL    NOT NULL,
    call_id       TEXT    NOT NULL,
    cseq          INTEGER NOT NULL,
    q             REAL,
    path          TEXT    NOT NULL DEFAULT '[]',
    source        TEXT    NOT NULL DEFAULT '',
    user_agent    TEXT    NOT NULL DEFAULT '',
    instance      TEXT    NOT NULL DEFAULT '',
    reg_id        INTEGER,
    registered_at REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (aor, contact)
) WITHOUT ROWID;

CREATE INDEX bindings_expires_at ON bindings (expires_at);

-- The change feed. AUTOINCREMENT: a sequence number is never reused, even after prune().
CREATE TABLE changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    op     TEXT    NOT NULL CHECK (op IN ('put', 'delete')),
    at     REAL    NOT NULL
);

-- Small settings and secrets (the server's nonce secret...).
CREATE TABLE kv (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Banned sources (fail-to-ban). until NULL = until an operator lifts it.
CREATE TABLE bans (
    ip       TEXT    NOT NULL PRIMARY KEY,
    until    REAL,
    reason   TEXT    NOT NULL DEFAULT '',
    count    INTEGER NOT NULL DEFAULT 1,
    first_at REAL    NOT NULL DEFAULT 0,
    last_at  REAL    NOT NULL DEFAULT 0,
    users    TEXT    NOT NULL DEFAULT '[]'
) WITHOUT ROWID;

CREATE INDEX bans_until ON bans (until) WHERE until IS NOT NULL;

-- Call detail records.
CREATE TABLE cdrs (
    id          TEXT    NOT NULL PRIMARY KEY,
    caller      TEXT    NOT NULL,
    dialed      TEXT    NOT NULL,
    setup_at    REAL    NOT NULL,
    callee      TEXT    NOT NULL DEFAULT '',
    call_id     TEXT    NOT NULL DEFAULT '',
    caller_addr TEXT    NOT NULL DEFAULT '',
    callee_addr TEXT    NOT NULL DEFAULT '',
    direction   TEXT    NOT NULL DEFAULT 'internal',
    route       TEXT    NOT NULL DEFAULT '',
    ring_at     REAL,
    answer_at   REAL,
    end_at      REAL,
    duration    REAL    NOT NULL DEFAULT 0,
    status      INTEGER,
    cause       INTEGER,
    reason      TEXT    NOT NULL DEFAULT '',
    hangup      TEXT    NOT NULL DEFAULT '',
    result      TEXT    NOT NULL,
    extra       TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX cdrs_setup_at ON cdrs (setup_at, id);
