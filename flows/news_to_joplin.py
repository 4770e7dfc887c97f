"""Example trigger: Python's news kept as notes in Joplin, to read and annotate offline.

Needs the Joplin app on this machine with its Web Clipper service on (Tools > Options >
Web Clipper), then `triggerflow connect joplin` (allow triggerflow in the Joplin window).
"""

from triggerflow import every, trigger
from triggerflow.sinks import joplin
from triggerflow.sources import rss


@trigger(schedule=every("6h"))
def news_to_joplin():
    """Python Insider posts as notes in the Joplin notebook "Python news"."""
    joplin(
        rss("https://pythoninsider.blogspot.com/feeds/posts/default"),
        "Python news",
        tags=["python", "news"],
        limit="20/day",
    )
