"""The store's schema: one DDL string per version, applied in order.

``meta.schema_version`` says which migrations ran. A new version appends a
migration; existing ones are never edited in what they do. They are written in SQL that
DuckDB and PostgreSQL both accept, so one list makes both backends' schemas
(``tests/test_postgres.py`` compares the two). ``meta.application`` (:data:`MARKER`) says
that the file is triggerflow's: a file with tables of its own and no marker is refused,
not migrated (issue 15, item 16).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: items, per-source state, the delivery ledger.
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE TABLE items (
        source VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        title VARCHAR,
        link VARCHAR,
        summary VARCHAR,
        content VARCHAR,
        author VARCHAR,
        published TIMESTAMPTZ,
        tags VARCHAR[],
        enclosures VARCHAR[],
        raw VARCHAR,
        hash VARCHAR,
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (source, id)
    );
    CREATE TABLE sources (
        source VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        url VARCHAR NOT NULL,
        title VARCHAR,
        etag VARCHAR,
        last_modified VARCHAR,
        fetched_at TIMESTAMPTZ,
        checked_at TIMESTAMPTZ,
        last_success TIMESTAMPTZ,
        last_error VARCHAR,
        last_error_at TIMESTAMPTZ
    );
    CREATE TABLE trigger_sources (
        trigger VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        PRIMARY KEY (trigger, source)
    );
    CREATE TABLE deliveries (
        trigger VARCHAR NOT NULL,
        sink VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error VARCHAR,
        queued_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        sent_at TIMESTAMPTZ,
        PRIMARY KEY (trigger, sink, target, source, item_id)
    );
    """,
    # 2: pauses by hand, vacation, and "skip what was published before" marks.
    """
    CREATE TABLE pauses (
        trigger VARCHAR PRIMARY KEY,
        paused_at TIMESTAMPTZ NOT NULL,
        note VARCHAR
    );
    CREATE TABLE vacation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        since TIMESTAMPTZ NOT NULL,
        note VARCHAR,
        resume VARCHAR[] NOT NULL
    );
    CREATE TABLE skip_before (
        trigger VARCHAR PRIMARY KEY,
        until TIMESTAMPTZ NOT NULL
    );
    """,
    # 3: the limit each sink target was last run with (for `status`).
    """
    CREATE TABLE routes (
        trigger VARCHAR NOT NULL,
        sink VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        limit_spec VARCHAR,
        PRIMARY KEY (trigger, sink, target)
    );
    """,
    # 4: triggers that are failing now, so that an outage is announced once.
    """
    CREATE TABLE alerts (
        trigger VARCHAR PRIMARY KEY,
        failing_since TIMESTAMPTZ NOT NULL,
        reason VARCHAR NOT NULL
    );
    """,
    # 5: what arrived by itself (webhook deliveries, bot messages), stored before it is
    # acknowledged; seq orders it for the per-trigger read cursors.
    """
    CREATE SEQUENCE inbox_seq START 1;
    CREATE TABLE inbox (
        kind VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        seq BIGINT NOT NULL DEFAULT nextval('inbox_seq'),
        event VARCHAR NOT NULL,
        repo VARCHAR,
        payload VARCHAR NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        ignored BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE inbox_cursors (
        trigger VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (trigger, kind)
    );
    """,
    # 6: where an API source (Mastodon, Wallabag, Trello) stopped reading: the newest id
    # or time it has seen, in the service's own terms.
    """
    ALTER TABLE sources ADD COLUMN cursor VARCHAR;
    """,
    # 7: the marker that says this file is triggerflow's store (stores from before it
    # are recognised by their tables and get it here).
    """
    INSERT INTO meta VALUES ('application', 'triggerflow')
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    """,
    # 8: when each trigger first existed (serve loaded it, or its first run): an event
    # trigger reads only deliveries received since then (issue 15, item 10). Triggers
    # that already read the inbox or sent something keep every delivery they had.
    """
    CREATE TABLE trigger_starts (
        trigger VARCHAR PRIMARY KEY,
        since TIMESTAMPTZ NOT NULL
    );
    INSERT INTO trigger_starts
        SELECT DISTINCT trigger, TIMESTAMPTZ '1970-01-01 00:00:00+00'
        FROM (SELECT trigger FROM inbox_cursors UNION SELECT trigger FROM routes) AS t;
    """,
    # 9: who holds a claim (host, process) and until when: a rerun takes over the items
    # of a run that died at once instead of waiting for its lease (issue 16, item 1).
    """
    ALTER TABLE deliveries ADD COLUMN claimed_by VARCHAR;
    ALTER TABLE deliveries ADD COLUMN lease_until TIMESTAMPTZ;
    """,
    # 10: polite polling (issue 20): when each feed is due again and why, its failures in
    # a row (the backoff), and when it answered 410 Gone (no longer fetched).
    """
    ALTER TABLE sources ADD COLUMN next_fetch TIMESTAMPTZ;
    ALTER TABLE sources ADD COLUMN next_reason VARCHAR;
    ALTER TABLE sources ADD COLUMN failures INTEGER DEFAULT 0;
    ALTER TABLE sources ADD COLUMN gone_at TIMESTAMPTZ;
    """,
    # 11: a feed that went silent (issue 20, item 2): since when it was noted (once per
    # silence, cleared by its next item), and the note in words.
    """
    ALTER TABLE sources ADD COLUMN silent_since TIMESTAMPTZ;
    ALTER TABLE sources ADD COLUMN silent_note VARCHAR;
    """,
    # 12: requests to a service per token in its rate window, counted for every host
    # (issue 18, item 4; used with the PostgreSQL store, see _rates).
    """
    CREATE TABLE requests (
        bucket VARCHAR NOT NULL,
        sent_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX requests_bucket ON requests (bucket, sent_at);
    """,
)

VERSION = len(MIGRATIONS)
MARKER = "triggerflow"  # meta.application of every store, from version 7 on
MARKED_SINCE = 7

# Delivery states, as stored in deliveries.state.
QUEUED, SENT, FAILED, DEAD, SKIPPED = "queued", "sent", "failed", "dead", "skipped"
# Claimed by a run that is sending it now (counts against limits; back to queued if the
# run dies and its lease runs out).
SENDING = "sending"
