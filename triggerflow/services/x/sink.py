"""The X sink: ``x_post(items, budget="5.00/month")`` posts each item once.

``POST /2/tweets`` with the text cut as X counts it (:mod:`.text`). X takes no
idempotency key, but it refuses a post whose text is the same as one the account just
made (403 "duplicate content"): when an earlier attempt got no answer, that refusal
means the first one arrived, and the item counts as sent.

Posting costs money (pay-per-use; docs.x.com, "X API pay-per-usage pricing", read
2026-12-04): $0.015 a post, $0.200 a post with a URL. ``budget="5.00/month"`` keeps the
spending in the ledger: it is a publication limit of as many posts as the budget buys
per period (333 a month at $0.015 without links, 25 with them); what is over stays
queued until the period frees room. ``link=False`` posts without the link, at the lower
price.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from ..._durations import parse_per
from ..._format import Format, render
from ...exceptions import ConfigurationError, ServiceRejected
from ...limits import Limit, parse_limit
from ...types import Item, SinkReport
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver
from .text import URL, fit_x

__all__ = ["PRICE", "PRICE_WITH_URL", "budget_limit", "x_post"]

PRICE = 0.015  # US$ a post (Content: Create), docs.x.com, read 2026-12-04
PRICE_WITH_URL = 0.200  # a post with a URL (Content: Create (with URL))
_BUDGET = re.compile(r"^\s*\$?\s*(\d+(?:\.\d+)?)\s*/\s*(.+?)\s*$")
_DUPLICATE = "duplicate content"  # X's words in the 403 for a repeated text


def x_post(
    items: Iterable[Item],
    *,
    account: str = "default",
    format: Format | None = None,  # noqa: A002 - the word users expect
    link: bool = True,
    budget: str | None = None,
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Post items to a connected X account.

    Args:
        items: what to post (only items not yet posted by this trigger go out).
        account: the account's name (``triggerflow connect x --account NAME``).
        format: ``callable(item) -> str`` or a template like ``"{title} {link}"``;
            default: the title, then the link on its own line.
        link: False: post without any URL (X charges far more for a post with one).
        budget: the most to spend, e.g. ``"5.00/month"`` or ``"1/week"`` (US$).
        first_run: how many of the newest items the first run posts (default 5).
        limit: a publication limit, e.g. ``"5/hour"`` (or a budget: not both).

    Returns:
        What was posted, queued or failed (in a preview: what would be posted).
    """
    problem = None
    try:
        if budget is not None:
            if limit is not None:
                raise ConfigurationError("x_post(): give limit= or budget=, not both")
            limit = budget_limit(budget, PRICE_WITH_URL if link else PRICE)
        else:
            limit = parse_limit(limit)
    except ConfigurationError as e:
        problem, limit = str(e), None
    return deliver(_Post(account, format, link, problem), items, first_run=first_run, limit=limit)


def budget_limit(budget: str, price: float) -> Limit:
    """``"5.00/month"`` at ``price`` a post → at most that many posts per month."""
    m = _BUDGET.match(budget)
    where = f"x_post(budget={budget!r})"
    if not m:
        raise ConfigurationError(f"{where}: write it like '5.00/month' or '1/week' (US$)")
    per = m.group(2).lower()
    period = timedelta(days=30) if per in ("month", "mo") else parse_per(per, what=where)
    posts = math.floor(float(m.group(1)) / price + 1e-9)
    if posts < 1:
        raise ConfigurationError(
            f"{where}: that buys no post at ${price:.3f} a post; raise it, or link=False"
        )
    return Limit(posts, period)


@dataclass(frozen=True)
class _Post(ServicePoster):
    account: str
    format: Format | None
    link: bool
    misconfigured: str | None  # the budget or limit could not be read
    service: str = "x"

    @property
    def target(self) -> str:
        return f"account {self.account}"

    def problem(self) -> str | None:
        return self.misconfigured

    def text(self, item: Item) -> str:
        text = render(item, self.format)
        if not self.link:
            return fit_x(" ".join(URL.sub("", text).split()))
        return fit_x(text, item.link)

    def preview(self, item: Item) -> str:
        return self.text(item)

    def start(self, client: ServiceClient) -> Send:
        def send(item: Item, delivery: str, retried: bool) -> None:
            what = f"the post for {item.title or item.link or item.id!r}"
            r = client.post("/2/tweets", json={"text": self.text(item)}, accept=(403,),
                            what=what)  # fmt: skip
            if r.status_code != 403:
                return
            detail = str(r.json().get("detail") or "")
            if _DUPLICATE not in detail.lower():
                raise client.error(r, what)  # the token (reconnect)
            if not retried:  # another item's text: X will not post it twice
                raise ServiceRejected("x", f"X refused {what}: {detail}", 403)
            # else: the attempt that got no answer did post it

        return send
