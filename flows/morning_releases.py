"""Example trigger: a weekday-morning round of release feeds, posted in the team room.

Needs the XMPP account "default" (see python_news.py) and a room the account may join.
"""

from triggerflow import cron, trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

FEEDS = [
    "https://github.com/PrefectHQ/prefect/releases.atom",
    "https://github.com/duckdb/duckdb/releases.atom",
    "https://github.com/poezio/slixmpp/tags.atom",
]


@trigger(schedule=cron("0 8 * * 1-5", timezone="Europe/Paris"))
def morning_releases():
    """New releases of the tools we run on, in the team room at 8 on weekdays."""
    xmpp(rss(*FEEDS), room="team@conference.example.org", format="{title}: {link}")
