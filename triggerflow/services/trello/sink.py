"""The Trello sink: ``trello(items, list_id="...")`` makes a card per item.

``POST /1/cards`` with ``idList``, ``name``, ``desc`` and ``urlSource`` (the link,
attached by Trello). Trello has no idempotency key: an item whose earlier attempt got
no answer (a timeout after Trello may have made the card) is first looked for among the
cards created on the list's board, and not made twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from ..._format import Format, render
from ...limits import Limit
from ...types import Item, SinkReport
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver

__all__ = ["trello"]

NAME_MAX = 16384  # Trello's limit of a card name
DESC_MAX = 16384


def trello(
    items: Iterable[Item],
    list_id: str,
    *,
    account: str = "default",
    format: Format | None = None,  # noqa: A002 - the word users expect
    description: Callable[[Item], str] | None = None,
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Create a Trello card per item in the list ``list_id``.

    Args:
        items: what to make cards of.
        list_id: the list's id (in Trello: open a card of the list, add ``.json`` to
            its address, and read ``idList``).
        account: the account's name (``triggerflow connect trello --account NAME``).
        format: the card's name: ``callable(item) -> str`` or a template like
            ``"{title}"``; default: the item's title (its first line).
        description: ``callable(item) -> str`` for the card's description; default: the
            link and the item's summary.
        first_run: how many of the newest items the first run makes cards of (default 5).
        limit: a publication limit, e.g. ``"10/hour"``.

    Returns:
        How many cards were made, queued or failed (in a preview: their names).
    """
    return deliver(
        _Card(account, list_id, format, description), items, first_run=first_run, limit=limit
    )


@dataclass(frozen=True)
class _Card(ServicePoster):
    account: str
    list_id: str
    format: Format | None
    description: Callable[[Item], str] | None
    service: str = "trello"

    @property
    def target(self) -> str:
        return f"list {self.list_id}"

    def problem(self) -> str | None:
        if not self.list_id.strip():
            return "trello(list_id=...): give the id of the list the cards go to"
        return None

    def name(self, item: Item) -> str:
        text = render(item, self.format) if self.format else item.display_title
        return text.strip().split("\n", 1)[0][:NAME_MAX]

    def desc(self, item: Item) -> str:
        if self.description:
            return self.description(item)[:DESC_MAX]
        return "\n\n".join(p for p in (item.link, item.summary) if p)[:DESC_MAX]

    def preview(self, item: Item) -> str:
        return self.name(item)

    def start(self, client: ServiceClient) -> Send:
        made: set[str] | None = None  # names of the board's new cards in this list

        def existing() -> set[str]:
            lst = client.get(f"/1/lists/{quote(self.list_id, safe='')}", what=self.target).json()
            actions = client.get(
                f"/1/boards/{lst['idBoard']}/actions",
                params={"filter": "createCard", "limit": "1000"},
                what=f"the board of {self.target}",
            ).json()
            return {
                a["data"]["card"].get("name", "")
                for a in actions
                if (a["data"].get("list") or {}).get("id") == self.list_id
            }

        def send(item: Item, delivery: str, retried: bool) -> None:
            nonlocal made
            name = self.name(item)
            if retried:
                made = existing() if made is None else made
                if name in made:
                    return  # the earlier attempt made it; its answer was lost
            data = {"idList": self.list_id, "name": name, "desc": self.desc(item), "pos": "bottom"}
            if item.link.startswith(("http://", "https://")):
                data["urlSource"] = item.link
            client.post("/1/cards", data=data, what=f"a card in {self.target}")

        return send
