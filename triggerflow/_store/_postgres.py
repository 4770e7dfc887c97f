"""The store on PostgreSQL: the same tables, the same SQL, for workers on several hosts.

``TRIGGERFLOW_STORE_URL=postgresql://user@host/db`` chooses it (the DuckDB file stays the
default). The transaction is the DuckDB one (:class:`StoreTransaction`, the same methods and SQL):
the store's SQL is written in what both engines accept, and
:class:`PgConnection` gives psycopg the face of a DuckDB connection: ``$1`` / ``$name``
parameters, ``execute(...).fetchall()``, and ``columns()`` relations as temporary tables
filled by ``COPY``. Parameters are bound client-side (psycopg's ``ClientCursor``, which
quotes each value with its type): the statements were written for DuckDB's binder,
which types ``$x IS NULL`` from the value.

What DuckDB got from having one writer per file is made explicit here, because several
processes on several hosts write at once:

- A claim takes a transaction-level advisory lock on its (sink, target) first: a limit
  counts what the target got from every trigger, so counting and taking must happen as
  one step per target (row locks alone would let two runs each see room for the last
  slot). Enqueueing locks the same key, so a route's first run is decided once.
- Inbox rows take their ``seq`` under a lock per kind: a sequence number is drawn
  before commit, so without it a reader could see seq 7 committed, move its cursor past
  it, and never see the still-uncommitted seq 6.
- Migrations run under a session advisory lock: two hosts starting at once migrate once.
- :meth:`PostgresStore.held` is a named lock for all hosts (a token refresh that must
  happen once: reload, refresh, save).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import mask_url
from ..exceptions import StoreBusyError, StoreError
from ._base import LOCK_HELD, LOCK_MIGRATE
from ._schema import MARKED_SINCE, MARKER, MIGRATIONS, VERSION
from ._transaction import StoreTransaction

__all__ = ["PgBurst", "PgConnection", "PostgresStore"]

_PARAM = re.compile(r"'(?:[^']|'')*'|\$(\d+|[A-Za-z_]\w*)|%")


@lru_cache(maxsize=512)
def _translate(sql: str) -> tuple[str, tuple[str, ...]]:
    """DuckDB's ``$1`` / ``$name`` placeholders as psycopg's ``%s``, and their order.

    A ``%`` anywhere, in string literals too, is doubled: psycopg reads every one.
    """
    order: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is None:  # a string literal, or a % outside one
            return m.group(0).replace("%", "%%")
        order.append(m.group(1))
        return "%s"

    return _PARAM.sub(sub, sql), tuple(order)


class PgConnection:
    """A psycopg connection that takes the store's DuckDB-style statements."""

    def __init__(self, con: Any) -> None:
        self.raw = con

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        """Run one statement (or several without parameters); the cursor, to fetch from."""
        if params is None:
            return self.raw.execute(sql.replace("%", "%%") if "%" in sql else sql)
        named = isinstance(params, Mapping)
        text, order = _translate(sql)
        if named:
            values = [params[name] for name in order]  # type: ignore[index]
        else:
            seq = list(params)  # type: ignore[arg-type]
            values = [seq[int(n) - 1] for n in order]
        return self.raw.execute(text, values)

    def register_columns(self, name: str, data: Mapping[str, Sequence[Any]], kinds: dict) -> None:
        """``data`` as temporary table ``name`` (dropped with the transaction)."""
        cols = ", ".join(f"{c} {kinds[c]}" for c in data)
        self.raw.execute(f"CREATE TEMP TABLE {name} ({cols}) ON COMMIT DROP")
        names = list(data)
        with self.raw.cursor().copy(f"COPY {name} ({', '.join(names)}) FROM STDIN") as cp:
            for row in zip(*(data[c] for c in names), strict=True):
                cp.write_row(row)

    def unregister(self, name: str) -> None:
        self.raw.execute(f"DROP TABLE IF EXISTS {name}")


def _migrate(con: Any, shown: str) -> None:
    import psycopg

    # The common case in one query, as on DuckDB: triggerflow's store, at this version.
    try:
        with con.transaction():
            row = con.execute(
                "SELECT max(value) FILTER (WHERE key = 'schema_version'), "
                "max(value) FILTER (WHERE key = 'application') FROM meta"
            ).fetchone()
        if row == (str(VERSION), MARKER):
            return
    except psycopg.errors.UndefinedTable:
        pass
    con.execute("SELECT pg_advisory_lock(%s, 0)", [LOCK_MIGRATE])
    try:
        try:
            with con.transaction():
                rows = con.execute("SELECT key, value FROM meta").fetchall()
            meta = {str(k): str(v) for k, v in rows}
        except psycopg.errors.UndefinedTable:
            meta = {}
            tables = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchone()[0]
            if tables:
                raise StoreError(
                    f"store {shown}: not a triggerflow store (its schema has tables of its "
                    "own and no triggerflow marker), so it is left as it is; name another "
                    "database or schema in TRIGGERFLOW_STORE_URL"
                ) from None
        version = int(meta.get("schema_version", "0") or 0)
        if meta and meta.get("application") != MARKER and version >= MARKED_SINCE:
            raise StoreError(f"store {shown}: not a triggerflow store (no marker)")
        if version > VERSION:
            raise StoreError(
                f"store {shown}: schema version {version} is newer than this triggerflow "
                f"understands ({VERSION}); upgrade triggerflow"
            )
        pg = PgConnection(con)
        for number in range(version, VERSION):
            with con.transaction():
                pg.execute(MIGRATIONS[number])
                pg.execute(
                    "INSERT INTO meta VALUES ('schema_version', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [str(number + 1)],
                )
    finally:
        con.execute("SELECT pg_advisory_unlock(%s, 0)", [LOCK_MIGRATE])


class PostgresStore:
    """The store in a PostgreSQL database. Cheap to create; connects per transaction."""

    def __init__(self, url: str, wait: float = 30.0, folder: Path | None = None) -> None:
        self.url = url
        self.wait = wait
        self._folder = folder

    @property
    def folder(self) -> Path:
        """This host's data folder: what stays local (the search index, the spool)."""
        if self._folder is None:
            from ..config import settings

            self._folder = settings().data_dir
        return self._folder

    def __repr__(self) -> str:
        return f"PostgresStore({mask_url(self.url)!r})"

    @property
    def location(self) -> str:
        """Where the store is, for messages (without the password)."""
        return mask_url(self.url)

    def exists(self) -> bool:
        """Whether the store was made (its schema migrated): a read does not make it."""
        with self._connection(migrate=False) as con:
            row = con.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
            return bool(row and row[0])

    @contextmanager
    def _connection(self, *, migrate: bool = True) -> Iterator[Any]:
        try:
            import psycopg
        except ImportError as e:
            raise StoreError(
                "TRIGGERFLOW_STORE_URL names a PostgreSQL store, and psycopg is not "
                "installed: pip install 'triggerflow[postgres]'"
            ) from e
        deadline = time.monotonic() + self.wait
        delay = 0.1
        while True:
            try:
                con = psycopg.connect(
                    self.url,
                    autocommit=True,
                    cursor_factory=psycopg.ClientCursor,
                    options="-c timezone=UTC",
                    connect_timeout=max(2, int(self.wait)),
                )
                break
            except psycopg.OperationalError as e:
                reason = _reason(e, self.url)
                if "does not exist" in reason or "authentication" in reason.lower():
                    raise StoreError(f"store {self.location}: {reason}") from None
                if time.monotonic() + delay > deadline:
                    raise StoreBusyError(
                        f"store {self.location}: cannot connect for {self.wait:g} s: {reason}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            if migrate:
                _migrate(con, self.location)
            yield con
        except psycopg.Error as e:
            raise StoreError(f"store {self.location}: {_reason(e, self.url)}") from None
        finally:
            con.close()

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[StoreTransaction]:
        """A short unit of work; ``commit=False`` rolls it back (dry runs, reads)."""
        with self._connection() as con:
            yield from _in_transaction(con, commit)

    @contextmanager
    def held(self, name: str, timeout: float, what: str) -> Iterator[None]:
        """Hold the lock ``name`` for every host on this database (a session advisory
        lock on a connection of its own: a host that dies lets it go with its
        connection). ``TimeoutError`` after ``timeout`` s of waiting (``what`` names it)."""
        with self._connection(migrate=False) as con:
            deadline = time.monotonic() + timeout
            take = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"
            while not con.execute(take, [LOCK_HELD, name]).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{what}: held by another process for {timeout:g} s ({self.location})"
                    )
                time.sleep(0.05)
            try:
                yield
            finally:
                con.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [LOCK_HELD, name])

    @contextmanager
    def burst(self) -> Iterator[PgBurst]:
        """One connection for a quick series of transactions (the outbox's recorder)."""
        with self._connection() as con:
            yield PgBurst(con)


def _in_transaction(con: Any, commit: bool) -> Iterator[StoreTransaction]:
    con.execute("BEGIN")
    try:
        yield StoreTransaction(PgConnection(con))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT" if commit else "ROLLBACK")


class PgBurst:
    """An open connection for several transactions in a row (see :meth:`PostgresStore.burst`)."""

    def __init__(self, con: Any) -> None:
        self._con = con

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[StoreTransaction]:
        """One unit of work, committed (or rolled back) at the end."""
        yield from _in_transaction(self._con, commit)


def _reason(e: BaseException, url: str) -> str:
    """psycopg's message in one line, without the URL's password in it."""
    text = " ".join(str(e).split())
    password = urlsplit(url).password if "://" in url else None
    if password:
        text = text.replace(password, "***")
    return text
