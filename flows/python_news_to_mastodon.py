"""Example trigger: the Python blog's new posts as toots, at most 3 an hour.

Needs a Mastodon account: `triggerflow connect mastodon --url https://your.instance`
(saved as the account "default"). What is over the limit waits for the next runs.
"""

from triggerflow import every, trigger
from triggerflow.sinks import mastodon
from triggerflow.sources import rss


@trigger(schedule=every("30m"))
def python_news_to_mastodon():
    """New posts of the Python blog on my Mastodon account, at most 3 an hour."""
    mastodon(
        rss("https://blog.python.org/feeds/posts/default"),
        visibility="unlisted",
        limit="3/hour",
    )
