"""Chat commands to the bot: a line of text in, a short plain-text answer out.

Only the bot's owners may use them (``_bot.py`` checks the sender). Each command is a
thin layer over the library, like the CLI: ``status`` reads the store, ``run`` asks
Prefect for a run of the trigger's deployment, ``vacation`` is ``triggerflow.vacation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._paused import paused_reasons
from ._store import Store
from .config import Settings
from .exceptions import TriggerflowError

HELP = """\
Commands:
  status               what was sent, what waits, what fails
  list                 the triggers and whether they are paused
  run NAME             run a trigger now
  pause NAME / resume NAME
  vacation on [NOTE] | off | status
  search WORDS         the best 5 stored items
  help                 this text"""


class Commands:
    """The commands for one ``serve``: its settings and the triggers it deployed."""

    def __init__(self, s: Settings, triggers: Mapping[str, Any]) -> None:
        self.settings = s
        self.triggers = dict(triggers)
        self._table: dict[str, Callable[[str], str]] = {
            "help": lambda _: HELP,
            "status": self.status,
            "list": self.list,
            "run": self.run,
            "pause": self.pause,
            "resume": self.resume,
            "vacation": self.vacation,
            "search": self.search,
        }

    def is_command(self, text: str) -> bool:
        """Whether ``text`` is meant as a command (its first word is one)."""
        words = text.strip().split(maxsplit=1)
        return bool(words) and words[0].lower() in self._table

    def answer(self, text: str) -> str:
        """The answer to one command line; errors come back as readable text."""
        word, _, rest = text.strip().partition(" ")
        try:
            return self._table[word.lower()](rest.strip())
        except TriggerflowError as e:
            return f"✗ {e}"

    # -- the commands ---------------------------------------------------------------
    def status(self, _: str) -> str:
        store = Store.default(self.settings)
        with store.transaction(commit=False) as tx:
            routes = tx.route_status()
            sources = tx.source_status()
            vacation = tx.vacation()
        lines = []
        if vacation.active:
            lines.append(f"On vacation since {vacation.since:%Y-%m-%d %H:%M}.")
        for r in routes:
            bits = [f"{r.sent} sent"]
            more = ((r.queued, "queued"), (r.failed + r.dead, "failed"))
            bits += [f"{n} {w}" for n, w in more if n]
            lines.append(f"{r.trigger} → {r.target}: {', '.join(bits)}")
            if r.last_error and (r.queued or r.failed or r.dead):
                lines.append(f"  why: {r.last_error}")
        failing = [x for x in sources if x.last_error]
        lines.append(f"Sources: {len(sources)}, failing: {len(failing)}")
        lines += [f"  ✗ {x.source}: {x.last_error}" for x in failing[:5]]
        return "\n".join(lines) if routes or sources else "Nothing collected yet."

    def list(self, _: str) -> str:
        held = paused_reasons(self.triggers)
        lines = []
        for name, t in sorted(self.triggers.items()):
            when = t.when
            state = f"paused ({held[name]})" if name in held else "active"
            lines.append(f"{name} ({when}): {state}")
        return "\n".join(lines) or "No triggers."

    def _name(self, rest: str, command: str) -> str:
        name = rest.split(maxsplit=1)[0] if rest else ""
        if name not in self.triggers:
            known = ", ".join(sorted(self.triggers)) or "none"
            raise TriggerflowError(f"{command}: no trigger named {name!r} (triggers: {known})")
        return name

    def run(self, rest: str) -> str:
        name = self._name(rest, "run")
        from prefect.deployments import run_deployment

        flow_run = run_deployment(f"{name}/{name}", timeout=0)
        return f"Started {name} (run {flow_run.name})."

    def pause(self, rest: str) -> str:
        from . import vacation

        name = self._name(rest, "pause")
        note = rest.partition(" ")[2].strip() or None
        vacation.pause(name, note)
        return f"Paused {name}."

    def resume(self, rest: str) -> str:
        from . import vacation

        name = self._name(rest, "resume")
        vacation.resume(name)
        return f"Resumed {name}."

    def vacation(self, rest: str) -> str:
        from . import vacation

        action, _, note = rest.partition(" ")
        if action == "on":
            change = vacation.on(note.strip() or None)
            return f"Vacation on: paused {', '.join(change.changed) or 'nothing'}."
        if action == "off":
            change = vacation.off()
            return f"Vacation off: resumed {', '.join(change.changed) or 'nothing'}."
        state = vacation.status()
        if not state.active:
            return "Not on vacation."
        since = f"{state.since:%Y-%m-%d %H:%M}" if state.since else "?"
        return f"On vacation since {since}; will resume: {', '.join(state.resume) or 'nothing'}."

    def search(self, rest: str) -> str:
        from ._search import search

        if not rest:
            raise TriggerflowError("search: give words to look for")
        hits = search(rest, limit=5)
        if not hits:
            return f"No item matches {rest!r}."
        return "\n".join(f"{i.title} {i.link}".strip() for i in hits)
