"""Example trigger: several feeds merged and filtered into one feed of your own.

No account needed: `triggerflow feeds export security` prints it (Atom; --rss for RSS 2.0).
"""

from triggerflow import every, trigger
from triggerflow.sinks import feed
from triggerflow.sources import rss

FEEDS = [
    "https://www.debian.org/security/dsa",
    "https://lwn.net/headlines/rss",
    "https://blog.python.org/feeds/posts/default",
]
WORDS = ("security", "cve", "vulnerab")


@trigger(schedule=every("1h"))
def security_digest():
    """Security news from several feeds, merged into one feed called "security"."""
    items = rss(*FEEDS)
    feed(items.filter(lambda i: any(w in (i.title or "").lower() for w in WORDS)), name="security")
