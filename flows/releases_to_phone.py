"""Example trigger: new Python releases as notifications on my phone, through Apprise.

Needs a notifier: `triggerflow connect apprise --account phone` asks for its Apprise URL,
e.g. `ntfys://ntfy.sh/my-secret-topic` with the ntfy app on the phone (any service
Apprise knows works: Telegram, Matrix, Gotify, e-mail, ...).
"""

from triggerflow import every, trigger
from triggerflow.sinks import notify
from triggerflow.sources import rss


@trigger(schedule=every("1h"))
def releases_to_phone():
    """New Python releases on my phone (Apprise account "phone"), at most 5 a day."""
    notify(
        rss("https://www.python.org/downloads/feed.rss"),
        "phone",
        title="Python: {title}",
        limit="5/day",
    )
