"""``triggerflow connect apprise``: a notifier's Apprise URL, saved encrypted in a block.

The URL holds the credentials, so it is read from ``TRIGGERFLOW_APPRISE_URL`` or asked
for (not echoed) unless given with ``--url``, and never printed. Apprise checks that it
knows the URL; ``--send-test`` also sends one notification through it.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from ...exceptions import ConfigurationError
from .._connect import Say, save, secret
from .client import URLS_HELP, describe, notifier, scrub, what_apprise_said

__all__ = ["EXAMPLES", "add_arguments", "connect_apprise", "run"]

ENV = "TRIGGERFLOW_APPRISE_URL"
EXAMPLES = [
    "triggerflow connect apprise --account phone   (asks for the URL, e.g. ntfys://…)",
]


def connect_apprise(
    url: str, account: str = "default", *, send_test: bool = False, say: Say = print
) -> None:
    """Check that Apprise knows ``url`` (and, with ``send_test``, that it delivers), then
    save it as the account ``account``."""
    from apprise import NotifyType

    from .account import AppriseAccount

    url = url.strip()
    plugin = notifier(url)
    what = describe(url)
    if send_test:
        with what_apprise_said() as said:
            sent = plugin.notify(
                body="triggerflow can notify you here.",
                title="triggerflow",
                notify_type=NotifyType.INFO,  # plugins read its .value: never a plain str
            )
        if not sent:
            why = scrub(said[-1], url) if said else "no reason given"
            raise ConfigurationError(f"Apprise {what}: the test notification failed: {why}")
        say(f"Sent a test notification through {what}.")
    block = AppriseAccount(url=f"{urlsplit(url).scheme}://…", user=plugin.service_name,
                           apprise_url=url)  # fmt: skip
    say(f"Connected Apprise notifier {what} as {save(block, 'apprise', account)!r}.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help=f"the Apprise URL (else {ENV}, else asked; {URLS_HELP})")
    p.add_argument("--send-test", action="store_true", help="send one notification to check it")


def run(args: argparse.Namespace, say: Say) -> None:
    url = secret(args.url, ENV, "Apprise URL (not shown): ")
    connect_apprise(url, args.account, send_test=args.send_test, say=say)
