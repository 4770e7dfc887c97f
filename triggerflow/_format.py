"""How an item becomes the text a sink sends: a format function or template."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .types import Item

__all__ = ["Format", "render"]

Format = Callable[[Item], str] | str


def render(item: Item, fmt: Format | None) -> str:
    """The message body for ``item``."""
    if fmt is None:
        ready = item.raw.get("text")  # a source's own message (GitHub webhooks)
        if isinstance(ready, str) and ready:
            return ready
        return "\n".join(p for p in (item.title, item.link) if p) or item.display_title
    if callable(fmt):
        return fmt(item)
    fields: dict[str, Any] = {k: getattr(item, k) for k in Item.__dataclass_fields__}
    return fmt.format_map(fields)
