"""X (Twitter): a post per item (sink), a user's posts, mentions, a search (sources)."""

from .. import Service

SERVICE = Service(
    name="x",
    title="X",
    account="XAccount",
    connect="an X account (your app's client id, approved in the browser)",
    sources=("x_posts", "x_mentions", "x_search"),
    sinks=("x_post",),
    token_path="/2/oauth2/token",
    rotating_refresh=True,  # X's refresh tokens work once
)
