"""Trello: a card per item (sink), cards created on a board (source)."""

from .. import Service

SERVICE = Service(
    name="trello",
    title="Trello",
    account="TrelloAccount",
    connect="a Trello account (an API key and a token you paste)",
    sources=("trello_cards",),
    sinks=("trello",),
    window=(100, 10.0),  # 100 requests per 10 s per token; Trello sends no rate headers
    wait_after_429=10.0,  # its 429 says nothing about when: its window is 10 s
)
