"""Example trigger: what I favourite on Mastodon, saved to Wallabag to read later.

Needs the Mastodon account "default" (`triggerflow connect mastodon --url ...`) and a
Wallabag account "default" (`triggerflow connect wallabag --url ... --client-id ...
--username ...`). Each status is saved by its address.
"""

from triggerflow import every, trigger
from triggerflow.sinks import wallabag
from triggerflow.sources import mastodon_favourites


@trigger(schedule=every("15m"))
def favourites_to_wallabag():
    """Mastodon favourites to Wallabag, tagged "mastodon"."""
    wallabag(mastodon_favourites(), tags=["mastodon"])
