"""Apprise: every other notifier (ntfy, Telegram, Matrix, Discord, e-mail, Gotify, ...)."""

from .. import Service

SERVICE = Service(
    name="apprise",
    title="Apprise",
    account="AppriseAccount",
    connect="any notifier Apprise knows (ntfy, Telegram, Matrix, e-mail, ...) by its URL",
    sinks=("notify",),
)
