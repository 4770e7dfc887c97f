"""Joplin: a note per item (sink), new notes (source), through the desktop app's Data API."""

from .. import Service

SERVICE = Service(
    name="joplin",
    title="Joplin",
    account="JoplinAccount",
    connect="the Joplin app on this machine (its Web Clipper service and token)",
    sources=("joplin_notes",),
    sinks=("joplin",),  # no rate limit: the app runs on this machine
)
