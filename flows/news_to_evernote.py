"""Example trigger: Python's news as Evernote notes, in the notebook "Python news".

Needs an Evernote developer token: `triggerflow connect evernote`. Without one, write
files that Evernote imports (File > Import) instead:
`enex(rss(...), "~/Evernote imports")`.
"""

from triggerflow import every, trigger
from triggerflow.sinks import evernote
from triggerflow.sources import rss


@trigger(schedule=every("6h"))
def news_to_evernote():
    """Python Insider posts as Evernote notes in "Python news", at most 20 a day."""
    evernote(
        rss("https://pythoninsider.blogspot.com/feeds/posts/default"),
        "Python news",
        tags=["python", "news"],
        limit="20/day",
    )
