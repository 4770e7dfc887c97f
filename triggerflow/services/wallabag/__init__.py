"""Wallabag: each item's link saved to read later (sink), saved entries (source)."""

from .. import Service

SERVICE = Service(
    name="wallabag",
    title="Wallabag",
    account="WallabagAccount",
    connect="a Wallabag account (your API client, user name and password)",
    sources=("wallabag_entries",),
    sinks=("wallabag",),
    token_path="/oauth/v2/token",  # no rate limit of its own
)
