"""Example trigger: Python's news on X, without links (the cheaper posts), within $1 a month.

Needs an X app of your own (X Developer Console, callback http://127.0.0.1:8976/callback)
and credits for its pay-per-use API, then `triggerflow connect x --client-id ID`.
"""

from triggerflow import every, trigger
from triggerflow.sinks import x_post
from triggerflow.sources import rss


@trigger(schedule=every("1h"))
def news_to_x():
    """Python Insider posts on X, titles only, at most $1.00 a month (66 posts)."""
    x_post(
        rss("https://pythoninsider.blogspot.com/feeds/posts/default"),
        format="{title}",
        link=False,
        budget="1.00/month",
    )
