"""The Apprise account: one Apprise URL (it holds the credentials), kept encrypted."""

from __future__ import annotations

from pydantic import Field, SecretStr

from .._account import ServiceAccount

__all__ = ["AppriseAccount"]


class AppriseAccount(ServiceAccount):
    """One notifier by its Apprise URL, e.g. ``ntfys://user:pass@ntfy.sh/topic``.

    ``url`` and ``user`` only say what it is (``ntfy (ntfys://…)``); the URL itself, which
    holds tokens and passwords, is ``apprise_url``, stored encrypted like every secret.
    Apprise makes its own requests (``client.notifier``): no ``http_client`` here.
    """

    _block_type_name = "Apprise Account"
    _block_type_slug = "triggerflow-apprise-account"
    _description = "A notifier's Apprise URL, saved with `triggerflow connect apprise`."

    apprise_url: SecretStr = Field(description="The Apprise URL (it holds the credentials).")

    def state(self) -> str:
        return "URL saved encrypted"
