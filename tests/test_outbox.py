"""The outbox's side of "handed on by key": what a sink is given, and what it holds.

A real DuckDB store in a temp folder; ``deliver`` called as a sink's step calls it. A
source that stored its items hands them on by key (``Items`` with a part in the store):
the sink then reads what it sends a page at a time, and a sink that needs keys only
(``keys_of``) reads nothing. An item the trigger changed is sent as the trigger made it.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from feeds_support import FeedServer, run_rss

from triggerflow import Item, Items, _outbox
from triggerflow._outbox import Attempt, Options, Progress, deliver
from triggerflow._steps import _load_stored
from triggerflow._store import Store, _items, _ledger, now
from triggerflow._store._items import read_items
from triggerflow.sinks._feed import _FeedSender
from triggerflow.types import InStore, ItemKey, Route, SinkReport, items_of

ROUTE = Route("t", "mine", "me")


@dataclass
class Keeping:
    """A batch sender of one's own: keeps what it was given, confirms each as it goes."""

    sink: str = "mine"
    target: str = "me"
    got: list[Item] = field(default_factory=list)
    most_alive: int = 0  # the most items of the batch alive at once while it went through

    def problem(self) -> str | None:
        return None

    def preview(self, item: Item) -> str:
        return item.title

    def send(
        self, items: Sequence[Item], attempts: Mapping[ItemKey, Attempt], progress: Progress
    ) -> None:
        alive: weakref.WeakSet[Item] = weakref.WeakSet()
        acked: list[ItemKey] = []
        for item in items:
            alive.add(item)
            self.got.append(replace(item))  # a copy: the sender's own, not the outbox's
            self.most_alive = max(self.most_alive, len(alive))
            acked.append(item.key)
            if len(acked) == 100:  # acknowledged in bunches, as XMPP's are
                progress.sent(acked)
                acked = []
            del item
            gc.collect(0)
        progress.sent(acked)


def stored(store: Store, n: int, title: str = "item {}") -> list[Item]:
    items = [Item("feed", f"{i:05d}", title=title.format(i)) for i in range(n)]
    with store.transaction() as tx:
        tx.upsert_items(items, now())
    return items


def by_key(store: Store, items: list[Item]) -> Items:
    """What rss() hands on in a run that stored them: keys, read when looked at."""
    keys = tuple(i.key for i in items)
    return items_of([InStore(keys, lambda k: _load(store, k))])


def _load(store: Store, keys: Sequence[ItemKey]) -> list[Item]:
    with store.transaction(commit=False) as tx:
        return tx.items_by_keys(keys)


def deliver_by_key(sink: Keeping | _FeedSender, store: Store, items: list[Item]) -> SinkReport:
    """``items`` (stored) delivered by ``sink`` as a sink step hands them: by key."""
    route = Route("t", sink.sink, sink.target)
    return deliver(sink, route, by_key(store, items), Options(None),
                   SinkReport(sink.sink, sink.target), store=store)  # fmt: skip


def test_a_sink_reads_what_it_sends_a_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s.duckdb", wait=10)
    items = stored(store, 2_500)
    monkeypatch.setattr(_outbox, "PAGE", 200)
    sender = Keeping()
    report = deliver_by_key(sender, store, items)
    assert report.sent == 2_500 and report.error is None
    assert sender.got == items  # all of them, oldest first, as stored
    # Never more than a page held (+ the one in hand): not the whole batch at once.
    assert sender.most_alive <= 201, sender.most_alive
    # And the ledger has each once: a second delivery sends nothing.
    again = Keeping()
    deliver_by_key(again, store, items)
    assert again.got == []


def test_a_sink_that_needs_keys_reads_no_more_than_the_claims_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s.duckdb", wait=10)
    items = stored(store, 1_500)
    monkeypatch.setattr(_outbox, "PAGE", 200)
    read: list[int] = []

    def counting(con: object, keys: Sequence[ItemKey]) -> list[Item]:
        got = read_items(con, keys)  # type: ignore[arg-type]
        read.append(len(got))
        return got

    monkeypatch.setattr(_ledger, "read_items", counting)
    monkeypatch.setattr(_items, "read_items", counting)
    report = deliver_by_key(_FeedSender("mine"), store, items)
    assert report.sent == 1_500
    # A generated feed is its ledger rows: it takes keys (keys_of), and what was read is
    # the page that comes with the claim, not 1,500 items.
    assert sum(read) <= 200, read


def test_a_sink_is_sent_the_item_the_trigger_handed_it_not_the_stored_copy(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.duckdb", wait=10)
    original = stored(store, 3)
    changed = [replace(i, title=f"[news] {i.title}") for i in original]  # the trigger's edit
    sender = Keeping()
    deliver(sender, ROUTE, Items(changed), Options(None), SinkReport("mine", "me"), store=store)
    assert [i.title for i in sender.got] == [f"[news] item {n}" for n in range(3)]
    # The store keeps what the source stored: the edit is the trigger's, for this sink.
    assert [i.title for i in _load(store, [i.key for i in original])] == [
        f"item {n}" for n in range(3)
    ]


def test_a_stored_feed_is_handed_on_by_key_and_read_only_when_looked_at(
    feeds: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = [f"post {n}" for n in range(30)]
    feeds.publish("/big.xml", titles)
    feeds.publish("/other.xml", titles)
    loads: list[int] = []

    def counting(keys: Sequence[ItemKey]) -> list[Item]:
        loads.append(len(keys))
        return _load_stored(keys)

    monkeypatch.setattr("triggerflow._steps._load_stored", counting)
    got = run_rss("t", (feeds.url("/big.xml"),), use_store=True, write=True)
    assert len(got.items) == 30 and got.report.new == 30
    assert loads == []  # stored, handed on by key: nothing held, nothing read back yet
    assert [i.title for i in got.items] == titles  # looked at: read once, in feed order
    assert loads == [30]
    # A preview writes nothing, so what it parsed stays at hand.
    preview = run_rss("t", (feeds.url("/other.xml"),), use_store=True, write=False)
    assert [i.title for i in preview.items] == titles and loads == [30]
