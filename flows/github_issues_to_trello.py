"""Example trigger: each issue opened on GitHub becomes a card on a Trello list.

Needs TRIGGERFLOW_GITHUB_SECRET (see github_activity.py) and a Trello account "default"
(`triggerflow connect trello --key YOUR_API_KEY`). Put your list's id in LIST: open a
card of that list in Trello, add ".json" to its address and read "idList".
"""

from triggerflow import trigger
from triggerflow.sinks import trello
from triggerflow.sources import github_webhook

LIST = "5f0c0ffee0c0ffee0c0ffee0"


@trigger(on=github_webhook(repo="me/project", events=["issues"]))
def github_issues_to_trello(events):
    """Issues opened on me/project, as cards in the triage list."""
    opened = events.filter(lambda e: e.raw.get("action") == "opened")
    trello(opened, LIST, format=lambda e: f"#{e.raw['number']} {e.raw['subject']}")
