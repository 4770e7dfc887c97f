"""``python -m triggerflow`` is the ``triggerflow`` command."""

from .cli import command

command()
