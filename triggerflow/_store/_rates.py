"""Requests to a service inside its rate window, counted for every host at once.

A service's documented limit (Trello: 100 requests per 10 s per token; Mastodon: 300
per 5 minutes per account) is per token, not per process: with workers on several
hosts, each counting for itself would together send several times the limit. With the
PostgreSQL store each request takes its place in ``requests`` first (the services'
client, ``services/_pacing.py``); the DuckDB store is one machine's and its processes
keep counting for themselves.
"""

from __future__ import annotations

from datetime import timedelta

from ._base import LOCK_RATE, TransactionBase, advisory_lock


class RatesMixin(TransactionBase):
    """The sliding windows of requests per service token."""

    def take_request(self, bucket: str, count: int, period: float) -> float:
        """Take a place for one request of ``bucket`` if fewer than ``count`` were made in
        the last ``period`` s, and return 0; else take none and return the seconds until
        the oldest leaves the window.

        Times are the database's own clock (``now()``), so hosts whose clocks differ
        still count one window; the lock per bucket makes counting and taking one step.
        """
        advisory_lock(self.con, LOCK_RATE, bucket)
        (now,) = self.con.execute("SELECT now()").fetchone()
        self.con.execute(
            "DELETE FROM requests WHERE bucket = $1 AND sent_at <= $2",
            [bucket, now - timedelta(seconds=period)],
        )
        used, oldest = self.con.execute(
            "SELECT count(*), min(sent_at) FROM requests WHERE bucket = $1", [bucket]
        ).fetchone()
        if used < count:
            self.con.execute("INSERT INTO requests VALUES ($1, $2)", [bucket, now])
            return 0.0
        return max(0.001, (oldest + timedelta(seconds=period) - now).total_seconds())
