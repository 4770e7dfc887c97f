"""Example trigger: a repository's activity in the team room, as GitHub's old Jabber hook did.

Needs TRIGGERFLOW_GITHUB_SECRET (the secret entered in the repository's Settings → Webhooks,
with the payload URL http://<this host>:4201/hooks/github) and the XMPP account "default"
(see python_news.py). `triggerflow serve` runs it as soon as a delivery is stored, and every
10 minutes to catch up on anything a lost wake-up left behind.
"""

from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import github_webhook

EVENTS = ["push", "pull_request", "issues", "release", "workflow_run"]


@trigger(on=github_webhook(repo="me/project", events=EVENTS))
def github_activity(events):
    """Pushes, pull requests, issues, releases and failed runs of me/project, in the team room."""
    xmpp(events, room="team@conference.example.org")
