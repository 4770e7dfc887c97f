"""When to fetch a feed next, and why: the rules of polite polling in one place.

A trigger's schedule is the most often its feeds are fetched; each feed also has its own
next-fetch time in the store, and a run fetches only the feeds that are due:

- after an answer (200 or 304): not again before it stops being fresh
  (``Cache-Control: max-age``, else ``Expires``), capped by ``feed_cache_max``;
- after a failure: exponential backoff, one minute doubling up to ``feed_backoff_max``
  (a day), or longer when the server asked for it (``Retry-After`` on 429 and 503,
  capped the same way). A failing feed is never given up on by itself: it is tried at
  least once a ``feed_backoff_max`` for as long as it is in a trigger, and reported;
- ``410 Gone``: the server says the feed was removed on purpose; it is not fetched again
  until ``triggerflow run NAME --all-feeds`` (which fetches every feed of a trigger
  whatever its next-fetch time);
- a feed that answers but went silent (no new item for 10 times its usual gap, at
  least ``feed_silent_min``) is noted once in the store (``note_silent``), and told in
  one line however many (:func:`silent_summary`).

Every rule takes ``now``, so tests drive them with a clock of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._durations import render_duration

BACKOFF_FIRST = 60.0  # seconds after the first failure; doubled after each further one
# A feed due within this much of a run is fetched by it: runs start a little early or
# late, and a feed fresh for exactly the trigger's interval must not skip every other run.
SLACK = timedelta(seconds=30)


@dataclass(frozen=True)
class Plan:
    """A feed's next fetch: when (None: at the next run), why, and its failures in a row."""

    next_fetch: datetime | None
    reason: str | None
    failures: int = 0
    gone: bool = False


def _exactly(seconds: float) -> str:
    return render_duration(timedelta(seconds=round(seconds)), words=True)


def after_answer(now: datetime, fresh_for: float | None, cache_max: float) -> Plan:
    """The plan after a 200 or a 304: due again once the answer is stale."""
    if not fresh_for:
        return Plan(None, None)
    wait = min(fresh_for, cache_max)
    capped = ""
    if wait < fresh_for:
        capped = f", capped at {_exactly(cache_max)} (TRIGGERFLOW_FEED_CACHE_MAX)"
    return Plan(now + timedelta(seconds=wait), f"fresh for {_exactly(fresh_for)}{capped}")


def after_failure(
    now: datetime,
    failures_before: int,
    *,
    trigger: str | None = None,
    status: int | None,
    retry_after: float | None,
    backoff_max: float,
) -> Plan:
    """The plan after a failed fetch (no answer, an error status, not a feed)."""
    failures = failures_before + 1
    if status == 410:
        return Plan(
            None,
            "410 Gone: the server says this feed was removed; not fetched again "
            f"(`triggerflow run {trigger or 'NAME'} --all-feeds` tries it once more)",
            failures,
            gone=True,
        )
    backoff = min(backoff_max, BACKOFF_FIRST * 2 ** min(failures - 1, 30))
    why = f"backing off after {failures} failure{'s' if failures > 1 else ''} in a row"
    if retry_after is not None and retry_after > backoff:
        wait = min(retry_after, backoff_max)
        why = f"the server asked to retry after {_exactly(retry_after)} (Retry-After)"
        if wait < retry_after:
            why += f", capped at {_exactly(backoff_max)} (TRIGGERFLOW_FEED_BACKOFF_MAX)"
    else:
        wait = backoff
    return Plan(now + timedelta(seconds=wait), why, failures)


def is_due(next_fetch: datetime | None, gone: bool, now: datetime) -> bool:
    """Whether a run at ``now`` fetches the feed."""
    return not gone and (next_fetch is None or next_fetch <= now + SLACK)


def silent_summary(silent: Mapping[str, str], *, most: int = 5) -> str:
    """Feeds that went silent, in one line: the first ``most`` with their notes."""
    shown = "; ".join(f"{feed} ({note})" for feed, note in list(silent.items())[:most])
    more = f"; and {len(silent) - most} more (`triggerflow status`)" if len(silent) > most else ""
    return f"{len(silent)} feed(s) went silent: {shown}{more}"
