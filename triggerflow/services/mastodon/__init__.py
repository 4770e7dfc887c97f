"""Mastodon: statuses out (sink), timelines, mentions and favourites in (sources)."""

from .. import Service

SERVICE = Service(
    name="mastodon",
    title="Mastodon",
    account="MastodonAccount",
    connect="a Mastodon account (approved in the browser)",
    sources=("mastodon_favourites", "mastodon_hashtag", "mastodon_home", "mastodon_mentions"),
    sinks=("mastodon",),
    window=(300, 300.0),  # 300 requests per 5 minutes per account
    token_path="/oauth/token",
)
