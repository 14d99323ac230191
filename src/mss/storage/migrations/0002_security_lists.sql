-- mss schema version 2: named IP lists (black / white) and the system blacklist (issue 6).
--
-- Both are small operator-edited tables the server keeps entirely in memory and reloads from the
-- change feed (entities `iplist`, key "<list> <network>", and `blacklist`, key
-- "<caller_prefix> <called_prefix>").

-- Named IP lists. `network` is the canonical text of an address ("192.0.2.7", "2001:db8::1")
-- or of a CIDR ("192.0.2.0/24"); the server decides what each list name means ("black": drop
-- before parse, "white": never banned by fail-to-ban).
CREATE TABLE iplists (
    list_name  TEXT NOT NULL CHECK (list_name <> ''),
    network    TEXT NOT NULL CHECK (network <> ''),
    note       TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (list_name, network)
) WITHOUT ROWID;

-- The system blacklist (call filtering): "*" = any number; rate = % of matching calls blocked.
CREATE TABLE blacklist (
    caller_prefix TEXT    NOT NULL CHECK (caller_prefix <> ''),
    called_prefix TEXT    NOT NULL CHECK (called_prefix <> ''),
    rate          INTEGER NOT NULL DEFAULT 100 CHECK (rate BETWEEN 0 AND 100),
    note          TEXT    NOT NULL DEFAULT '',
    created_at    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (caller_prefix, called_prefix)
) WITHOUT ROWID;
