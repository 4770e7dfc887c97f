"""Bluesky: a post per item (sink), an author's posts (source), on the AT Protocol."""

from .. import Service

SERVICE = Service(
    name="bluesky",
    title="Bluesky",
    account="BlueskyAccount",
    connect="a Bluesky account (its handle and an app password)",
    sources=("bluesky_posts",),
    sinks=("bluesky",),
    # No window of our own: the PDS sends RateLimit-* headers on every limited call, and
    # posting (5,000 points an hour, 3 a post) is far above what a trigger sends.
)
