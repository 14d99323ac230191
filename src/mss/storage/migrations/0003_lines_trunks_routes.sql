-- mss schema version 3: external lines, SIP trunks and the dial plan (issue 7).
--
-- Small operator-edited tables the server keeps in memory and reloads from the change feed
-- (entities `line`, `trunk`, `route`, key = id). Booleans are 0/1; NULL in a limit means
-- "unlimited"; NULL in lines.new_call_id means "the global default" (mss_var_param.ini).

-- External lines: registrations to providers. The password is kept in the clear because a
-- client must answer challenges for realms it learns only from the challenge (the database file
-- is owner-only, mode 0600).
CREATE TABLE lines (
    id                TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    account           TEXT    NOT NULL CHECK (account <> ''),
    domain            TEXT    NOT NULL CHECK (domain <> ''),
    password          TEXT    NOT NULL DEFAULT '',
    auth_user         TEXT    NOT NULL DEFAULT '',
    auth_with_domain  INTEGER NOT NULL DEFAULT 0,
    proxy             TEXT    NOT NULL DEFAULT '',
    transport         TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    register          INTEGER NOT NULL DEFAULT 1,
    expires           INTEGER NOT NULL DEFAULT 3600 CHECK (expires >= 0),
    new_call_id       INTEGER,
    owner             TEXT    NOT NULL DEFAULT '',
    max_calls         INTEGER CHECK (max_calls IS NULL OR max_calls >= 0),
    no_answer_timeout INTEGER NOT NULL DEFAULT 0 CHECK (no_answer_timeout >= 0),
    enabled           INTEGER NOT NULL DEFAULT 1,
    created_at        REAL    NOT NULL,
    updated_at        REAL    NOT NULL,
    extra             TEXT    NOT NULL DEFAULT '{}',
    contact_user      TEXT    NOT NULL DEFAULT ''
);

-- SIP trunks: peers trusted by address. max_incoming / max_outgoing: NULL = unlimited,
-- 0 = that direction refused, N = at most N concurrent calls.
CREATE TABLE trunks (
    id            TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    host          TEXT    NOT NULL CHECK (host <> ''),
    port          INTEGER NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport     TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    name          TEXT    NOT NULL DEFAULT '',
    max_incoming  INTEGER CHECK (max_incoming IS NULL OR max_incoming >= 0),
    max_outgoing  INTEGER CHECK (max_outgoing IS NULL OR max_outgoing >= 0),
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    extra         TEXT    NOT NULL DEFAULT '{}',
    caller_number TEXT    NOT NULL DEFAULT '',
    uri_params    TEXT    NOT NULL DEFAULT '',
    ping          INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX trunks_address ON trunks (host, port);

-- The dial plan: numbers starting with `prefix` (longest match wins) go to `target`
-- ("user", "user:<number>", "line:", "line:<id>", "trunk:<id>") after stripping `strip` leading
-- digits and prepending `prepend`; `fallback` names the route tried next when this one answers
-- 5xx or is over its limit.
CREATE TABLE routes (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    prefix     TEXT    NOT NULL,
    target     TEXT    NOT NULL CHECK (target <> ''),
    priority   INTEGER NOT NULL DEFAULT 0,
    strip      INTEGER NOT NULL DEFAULT 0 CHECK (strip >= 0),
    prepend    TEXT    NOT NULL DEFAULT '',
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL,
    fallback   TEXT    NOT NULL DEFAULT ''
);
