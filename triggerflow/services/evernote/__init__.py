"""Evernote: notes as ENEX files to import (no account), or made through its API."""

from .. import Service

SERVICE = Service(
    name="evernote",
    title="Evernote",
    account="EvernoteAccount",
    connect="an Evernote account (a developer token and its NoteStore URL)",
    sinks=("evernote", "enex"),
)
