"""Example trigger: new posts of the Python blogs, to me over XMPP, every 15 minutes.

Needs the XMPP account "default": set TRIGGERFLOW_XMPP_DEFAULT_JID,
TRIGGERFLOW_XMPP_DEFAULT_PASSWORD and TRIGGERFLOW_XMPP_DEFAULT_OWNER (you).
"""

from triggerflow import every, trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import rss


@trigger(schedule=every("15m"))
def python_news():
    """New posts from the Python Insider and PSF blogs, sent to me."""
    xmpp(
        rss(
            "https://blog.python.org/feeds/posts/default",
            "https://pyfound.blogspot.com/feeds/posts/default",
        )
    )
