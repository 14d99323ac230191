-- mss schema version 5: voicemail messages and their durable e-mail outbox (issue 10).
--
-- A message's audio is a WAV file under the data dir (`path`, relative to it); the row holds
-- who called whom, when, and for how long. `read` = 0 counts as a new message for MWI
-- (RFC 3842 Voice-Message new/old). Change-feed entity `voicemail`, key "<user> <id>".
CREATE TABLE voicemail (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    user           TEXT    NOT NULL CHECK (user <> ''),
    caller         TEXT    NOT NULL DEFAULT '',
    caller_display TEXT    NOT NULL DEFAULT '',
    call_id        TEXT    NOT NULL DEFAULT '',
    started_at     REAL    NOT NULL,
    duration       REAL    NOT NULL DEFAULT 0 CHECK (duration >= 0),
    path           TEXT    NOT NULL DEFAULT '',
    read           INTEGER NOT NULL DEFAULT 0 CHECK (read IN (0, 1)),
    created_at     REAL    NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX voicemail_by_user ON voicemail (user, started_at);

-- One e-mail per message, queued in the same transaction as the message, so nothing is lost
-- across SMTP outages or restarts. Deleting the message drops its e-mail (the audio is gone).
-- Change-feed entity `voicemail_mail`, key = message id.
CREATE TABLE voicemail_outbox (
    message_id TEXT    NOT NULL PRIMARY KEY REFERENCES voicemail (id) ON DELETE CASCADE,
    recipient  TEXT    NOT NULL CHECK (recipient <> ''),
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_try   REAL    NOT NULL DEFAULT 0,
    state      TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    last_error TEXT    NOT NULL DEFAULT '',
    updated_at REAL    NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX voicemail_outbox_due ON voicemail_outbox (state, next_try);
