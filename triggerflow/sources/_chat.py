"""Messages sent to the bot as a source: ``@trigger(on=xmpp_message(...))``.

``triggerflow serve`` keeps the bot account connected (``_bot.py``); each message it
receives that is not a command is stored in the inbox and wakes the triggers with a
Prefect event. Example: a link sent to the bot goes to a reading-list feed::

    @trigger(on=xmpp_message(contains="http"))
    def reading_list(messages):
        feed(messages, name="reading")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from .. import _runtime
from .._store import Delivery
from ..types import Item, Items
from ._inbox import read_inbox

__all__ = ["ChatMessages", "xmpp_message"]

KIND = "xmpp"
SOURCE = "xmpp-bot"  # the source key of every bot message item
EVENT = "triggerflow.xmpp.message"
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class ChatMessages:
    """Which messages to the bot a trigger takes. Create it with :func:`xmpp_message`.

    Attributes:
        senders: bare JIDs whose messages count; empty: the bot's owners.
        contains: text a message must contain (case-insensitive), if any.
    """

    senders: tuple[str, ...] = ()
    contains: str | None = None
    kind: ClassVar[str] = KIND

    def describe(self) -> str:
        who = ", ".join(self.senders) or "the owners"
        what = f" containing {self.contains!r}" if self.contains else ""
        return f"messages to the bot from {who}{what}"

    def prefect_trigger(self) -> Any:
        """The Prefect deployment trigger that runs the deployment when a message came."""
        from prefect.events import DeploymentEventTrigger

        return DeploymentEventTrigger(expect={EVENT}, match={"prefect.resource.id": "xmpp.bot.*"})

    def read(self) -> Items:
        """The new messages for the trigger in progress (the trigger calls it)."""
        ctx = _runtime.current()
        if ctx is not None and ctx.mode == "check":
            return Items()
        return read_inbox(self)

    def item(self, d: Delivery) -> Item | None:
        m = json.loads(d.payload)
        sender, body = m.get("from", ""), m.get("body", "")
        allowed = self.senders or tuple(m.get("owners", ()))
        if sender.lower() not in {s.lower() for s in allowed}:
            return None
        if self.contains and self.contains.lower() not in body.lower():
            return None
        link = _URL.search(body)
        stamp = m.get("stamp")
        first = body.strip().splitlines()[0] if body.strip() else ""
        return Item(
            source=SOURCE,
            id=d.id,
            title=first[:200],
            link=link.group(0).rstrip(".,;)>") if link else "",
            summary=body,
            author=sender,
            published=datetime.fromisoformat(stamp) if stamp else d.received_at,
        )


def waker(bot_jid: str) -> Callable[[str], None]:
    """For ``on=`` triggers run by workers elsewhere: a Prefect event per stored message
    to the bot, coalesced over bursts (see ``_wakeup``). Serve wakes its own event
    triggers in its process (``_event_runs``)."""
    from .._wakeup import Coalescer

    def emit(_: object) -> None:
        from prefect.events import emit_event

        emit_event(event=EVENT, resource={"prefect.resource.id": f"xmpp.bot.{bot_jid.lower()}"})

    coalesce = Coalescer(emit)

    return lambda key: coalesce(bot_jid)


def xmpp_message(
    senders: str | Iterable[str] | None = None, contains: str | None = None
) -> ChatMessages:
    """Run a trigger on messages sent to the bot: ``@trigger(on=xmpp_message())``.

    The trigger function receives them as items (title: the first line, link: the
    first URL, summary: the whole text, author: the sender).

    Args:
        senders: whose messages count (bare JIDs); default: the bot's owners.
        contains: only messages containing this text (e.g. ``"http"`` for links).
    """
    who = (senders,) if isinstance(senders, str) else tuple(senders or ())
    return ChatMessages(who, contains)
