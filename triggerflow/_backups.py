"""Backups of the store: ``triggerflow store backup|restore|check`` and serve's daily copy.

Backups are DuckDB files in ``<data dir>/backups`` (``TRIGGERFLOW_BACKUPS`` daily ones
are kept, named ``daily-<UTC time>.duckdb``; copies taken by hand are named
``backup-<UTC time>.duckdb`` and never removed). Each is checked before it gets its
name, so a file there is a store that opened and read back whole.

The search index (``<store>.search.duckdb``) is not backed up: it is built from the
store, and ``serve`` (or ``triggerflow search --reindex``) builds it again.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ._files import fsync_path
from ._store._backup import (
    CheckReport,
    Compacted,
    check_file,
    compact_store,
    copy_store,
    store_bytes,
)
from .config import Settings, private_dir
from .exceptions import ConfigurationError, StoreBusyError, StoreError

DAY = 24 * 3600.0
_STAMP = "%Y%m%d-%H%M%S"

Say = Callable[[str], None]


def _stamp(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime(_STAMP)


def _new_name(dest: Path, prefix: str) -> Path:
    """``dest`` itself, or for a folder a new ``<prefix>-<UTC time>[-n].duckdb`` in it."""
    if not dest.is_dir():
        return dest
    base = f"{prefix}-{_stamp()}"
    path, n = dest / f"{base}.duckdb", 1
    while path.exists():
        n += 1
        path = dest / f"{base}-{n}.duckdb"
    return path


def _tmp(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def _duckdb_only(s: Settings, what: str) -> None:
    """Refuse ``what`` (a file operation) for a PostgreSQL store, saying what to use."""
    if s.store_url:
        from .config import mask_url

        raise StoreError(
            f"store {mask_url(s.store_url)}: {what} is for the DuckDB file; the store is "
            "PostgreSQL (TRIGGERFLOW_STORE_URL): use pg_dump and pg_restore, and PostgreSQL's "
            "own VACUUM"
        )


def backup(s: Settings, dest: Path | None = None, *, prefix: str = "backup") -> Path:
    """Copy the store to ``dest`` (default: a new file in the backup dir), checked.

    Runs while ``serve`` and its runs write: they wait for the copy as for any other
    transaction.

    Raises:
        StoreError: there is no store yet, it cannot be read, or the copy failed its check.
    """
    _duckdb_only(s, "store backup")
    if not s.store_path.is_file():
        raise StoreError(f"store {s.store_path}: does not exist yet, nothing to back up")
    dest = _new_name(private_dir(s.backup_dir) if dest is None else dest.expanduser(), prefix)
    if dest.exists():
        raise StoreError(f"backup {dest}: already exists; choose another name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(dest)
    _remove(tmp)
    try:
        copy_store(s.store_path, s.store_wait, tmp)
        report = check_file(tmp, s.store_wait)
        if not report.ok:
            raise StoreError(f"backup {dest}: the copy failed its check: {report.problems[0]}")
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, dest)  # DETACH checkpointed the copy: it has no WAL
    return dest


def _remove(db: Path) -> None:
    for p in (db, Path(f"{db}.wal"), Path(f"{db}.turns")):
        p.unlink(missing_ok=True)


def compact(s: Settings) -> Compacted:
    """Give the store back the space DuckDB left behind; runs while serve and its runs write.

    Raises:
        StoreError: there is no store yet, or it could not be compacted (it is unchanged).
    """
    _duckdb_only(s, "store compact")
    if not s.store_path.is_file():
        raise StoreError(f"store {s.store_path}: does not exist yet, nothing to compact")
    return compact_store(s.store_path, s.store_wait)


def check(path: Path, s: Settings) -> CheckReport:
    """Check a store file (the live store or a backup); see ``check_file``."""
    return check_file(path.expanduser(), s.store_wait)


@dataclass(frozen=True)
class Restored:
    """What ``restore`` did.

    Attributes:
        source: the backup that is now the store.
        replaced: where the store it replaced was moved (None: there was none).
    """

    source: Path
    replaced: Path | None


def restore(s: Settings, source: Path) -> Restored:
    """Make the backup ``source`` the store; the store it replaces is kept beside it.

    Refused while ``serve`` runs (its runs would go on writing to the file being
    replaced) and while another process holds the store.

    Raises:
        ConfigurationError: serve is running.
        StoreBusyError: another process has the store open.
        StoreError: ``source`` is not a sound triggerflow store.
    """
    from ._prefect_server import running_serve

    _duckdb_only(s, "store restore")
    source = source.expanduser()
    live = running_serve(s)
    if live:
        raise ConfigurationError(
            f"store restore: triggerflow serve is running (pid {live['pid']}); stop it first"
        )
    report = check_file(source, s.store_wait)
    if not report.ok:
        raise StoreError(f"backup {source}: not restored: {'; '.join(report.problems)}")
    target = s.store_path
    _not_in_use(target)
    private_dir(target.parent)
    tmp = _tmp(target)
    shutil.copyfile(source, tmp)
    fsync_path(tmp)
    replaced: Path | None = None
    if target.exists():
        replaced = target.with_name(f"{target.name}.replaced-{_stamp()}")
        os.replace(target, replaced)
    # The WAL belongs to the file it was written for: left in place, DuckDB would replay
    # it onto the restored one.
    wal = Path(f"{target}.wal")
    if wal.exists():
        os.replace(wal, Path(f"{replaced}.wal") if replaced else wal.with_name(f"{wal.name}.old"))
    os.replace(tmp, target)
    # The search index describes the replaced store; serve or --reindex builds it anew.
    target.with_name(target.stem + ".search.duckdb").unlink(missing_ok=True)
    return Restored(source, replaced)


def _not_in_use(target: Path) -> None:
    """Refuse when some process (a notebook, a run) has the store open right now."""
    if not target.exists():
        return
    import duckdb

    from ._store._connection import _is_lock_conflict, open_duckdb

    try:
        open_duckdb(target, read_only=True).close()
    except duckdb.IOException as e:
        if _is_lock_conflict(e):
            raise StoreBusyError(
                f"store {target}: another process has it open ({e}); close it, then restore"
            ) from e
    except duckdb.Error:
        pass  # a damaged store is what one restores over


def daily_backups(s: Settings) -> list[Path]:
    """serve's daily backups, oldest first."""
    if not s.backup_dir.is_dir():
        return []
    return sorted(s.backup_dir.glob("daily-*.duckdb"))


def _taken_at(path: Path) -> datetime | None:
    try:
        stamp = path.stem.split("-", 1)[1][:15]  # YYYYmmdd-HHMMSS, then maybe -n
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None


def prune(s: Settings, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest daily backups; return those removed."""
    old = daily_backups(s)[: max(len(daily_backups(s)) - keep, 0)]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def next_due(s: Settings, interval: float = DAY) -> float:
    """Seconds until the next daily backup is due (0: now)."""
    times = [t for t in map(_taken_at, daily_backups(s)) if t is not None]
    if not times:
        return 0.0
    due = max(times) + timedelta(seconds=interval)
    return max((due - datetime.now(UTC)).total_seconds(), 0.0)


class Backups(threading.Thread):
    """serve's daily backup: one copy a day (the first soon after start), the newest kept.

    ``TRIGGERFLOW_BACKUPS`` says how many (0: none). A failure is said and tried again
    an hour later; it never stops serve.
    """

    def __init__(
        self, s: Settings, say: Say, *, interval: float = DAY, first: float = 60.0
    ) -> None:
        super().__init__(name="triggerflow-backups", daemon=True)
        self.settings = s
        self.say = say
        self.interval = interval
        self.first = first
        self._halt = threading.Event()

    def run(self) -> None:
        keep = self.settings.backups
        if keep <= 0:
            return
        # Not at once: serve's start (and the first runs) come first.
        delay = max(self.first, 0.0)
        while not self._halt.wait(delay):
            delay = next_due(self.settings, self.interval)
            if delay > 0:
                continue
            if not self.settings.store_path.is_file():
                delay = min(3600.0, self.interval)  # no trigger has run yet
                continue
            try:
                backup(self.settings, prefix="daily")
                prune(self.settings, keep)
            except Exception as e:  # never take serve down; say why and try later
                self.say(f"store backup: failed: {e}")
                delay = min(3600.0, self.interval)
            else:
                delay = self.interval

    def stop(self) -> None:
        """Stop waiting; a copy under way finishes (it is short) before the thread ends."""
        self._halt.set()
        self.join(timeout=60)


# serve compacts the store again once it has grown to twice its compacted size plus this:
# a store of a few blocks is not rewritten every hour.
COMPACT_SLACK = 256 * 1024


class Compactor(threading.Thread):
    """serve's compaction of the store (``compact``), checked every ``every`` seconds.

    The first check, soon after start, compacts (it also rewrites a store made by an
    older triggerflow with today's smaller blocks); later ones only when the store has
    grown to twice its size after the last compaction plus :data:`COMPACT_SLACK`. A
    failure (a notebook holding the store, say) is said and tried at the next check; it
    never stops serve.
    """

    def __init__(
        self, s: Settings, say: Say, *, every: float = 3600.0, first: float = 120.0
    ) -> None:
        super().__init__(name="triggerflow-compactor", daemon=True)
        self.settings = s
        self.say = say
        self.every = every
        self.first = first
        self.compacted: Compacted | None = None
        self.checks = 0
        self._halt = threading.Event()

    def due(self) -> bool:
        """Whether the store should be compacted now."""
        path = self.settings.store_path
        if not path.is_file():
            return False
        if self.compacted is None:
            return True
        return store_bytes(path) > 2 * self.compacted.after + COMPACT_SLACK

    def run(self) -> None:
        delay = max(self.first, 0.0)
        while not self._halt.wait(delay):
            delay = self.every
            self.checks += 1
            if not self.due():
                continue
            try:
                done = compact(self.settings)
            except Exception as e:  # never take serve down; say why and try later
                self.say(f"store compaction: failed: {e}")
                continue
            self.compacted = done
            if done.before - done.after >= COMPACT_SLACK:
                self.say(
                    f"store compacted: {done.before / 1e6:.1f} MB → {done.after / 1e6:.1f} MB "
                    f"in {done.seconds:.1f} s"
                )

    def stop(self) -> None:
        """Stop waiting; a compaction under way finishes (it is short) first."""
        self._halt.set()
        self.join(timeout=60)
