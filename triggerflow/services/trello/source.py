"""The Trello source: cards created on a board since last time.

``GET /1/boards/{id}/actions?filter=createCard`` lists the board's ``createCard``
actions newest first; ``since`` takes an action id, so the cursor is the newest action
seen. The first read takes the newest 50.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ...types import Item, Items
from .._client import ServiceClient
from .._source import read

__all__ = ["trello_cards"]

FIRST = 50  # cards the first read takes
MOST = 1000  # Trello's largest page


def trello_cards(board: str, account: str = "default") -> Items:
    """Cards created on the Trello ``board`` (its id or short link) since the last run.

    Example::

        xmpp(trello_cards("4eea4ffc91e31d1746000046"), to="me@example.org")
    """
    return read(_Cards(account, board))


@dataclass(frozen=True)
class _Cards:
    account: str
    board: str
    service: str = field(default="trello", init=False)

    @property
    def label(self) -> str:
        return f"trello board {self.board} ({self.account})"

    def key(self, client: ServiceClient) -> str:
        return f"trello:{self.board}"

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        params = {"filter": "createCard", "limit": str(MOST if cursor else FIRST)}
        if cursor:
            params["since"] = cursor
        actions = client.get(
            f"/1/boards/{quote(self.board, safe='')}/actions",
            params=params,
            what=f"board {self.board}",
        ).json()
        items = [_item(self.key(client), a) for a in actions if (a.get("data") or {}).get("card")]
        return items, (actions[0]["id"] if actions else cursor)


def _item(source: str, action: dict[str, Any]) -> Item:
    data = action["data"]
    card, lst = data["card"], data.get("list") or {}
    who = action.get("memberCreator") or {}
    short = card.get("shortLink")
    try:
        when = datetime.fromisoformat(action["date"]) if action.get("date") else None
    except ValueError:
        when = None
    return Item(
        source=source,
        id=card["id"],
        title=card.get("name") or "",
        link=f"https://trello.com/c/{short}" if short else "",
        summary=f"in list {lst['name']}" if lst.get("name") else "",
        author=who.get("fullName") or who.get("username") or "",
        published=when,
        raw=action,
    )
