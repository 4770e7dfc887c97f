"""Example trigger: Python's news posted on Bluesky, with a link card, at most 5 an hour.

Needs a Bluesky account: make an app password (Settings > Privacy and security > App
passwords), then `triggerflow connect bluesky --handle YOU.bsky.social`.
"""

from triggerflow import every, trigger
from triggerflow.sinks import bluesky
from triggerflow.sources import rss


@trigger(schedule=every("1h"))
def news_to_bluesky():
    """Python Insider posts on Bluesky (English), at most 5 an hour."""
    bluesky(
        rss("https://pythoninsider.blogspot.com/feeds/posts/default"),
        langs=["en"],
        limit="5/hour",
    )
