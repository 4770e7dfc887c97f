"""Chat commands to the bot: a line of text in, a short plain-text answer out.

Only the bot's owners may use them (``_bot.py`` checks the sender). Each command is a
thin layer over the library, like the CLI: ``status`` and ``list`` render the read model
(``_read``: the values ``triggerflow status`` and ``list`` show too), ``run`` asks
Prefect for a run of the trigger's deployment, ``vacation`` is ``triggerflow.vacation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._show import held_line, next_slot, pause_lines, vacation_line
from ._store import Store
from .config import Settings
from .exceptions import TriggerflowError

if TYPE_CHECKING:
    from ._show import TriggerLine

HELP = """\
Commands:
  status [NAME]        what was sent, what waits, what fails
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
        # serve's own mapping, not a copy: the watcher adds and removes triggers in it
        self.triggers = triggers
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
    def status(self, rest: str) -> str:
        from ._read import status

        name = rest.split(maxsplit=1)[0] if rest else None
        st = status(name, failures=0, store=Store.default(self.settings))
        lines = [line] if (line := vacation_line(st)) else []
        lines += pause_lines(st.pauses)
        waiting = {(w.trigger, w.sink, w.target): w for w in st.waiting}
        for r in st.routes:
            counts = ((r.queued, "queued"), (r.failed, "failed"), (r.dead, "dead"))
            bits = [f"{r.sent} sent"] + [f"{n} {what}" for n, what in counts if n]
            bits += [f"{r.skipped} skipped"] if r.skipped else []
            lines.append(f"{r.trigger} → {r.target}: {', '.join(bits)}")
            if w := waiting.get((r.trigger, r.sink, r.target)):
                lines.append(f"  {w.queued} wait for the limit {w.limit}; next {next_slot(w)}")
            if r.held:
                lines.append(f"  {held_line(r)}")
            if r.last_error and (r.queued or r.failed or r.dead):
                lines.append(f"  why: {r.last_error}")
        sent = {r.trigger for r in st.routes}
        lines += [f"{t}: {n} items, none sent" for t, n in st.collected.items() if t not in sent]
        if not st.ran:
            return "\n".join([*lines, "Nothing collected yet."])
        failing = st.failing_sources
        lines.append(f"Sources: {len(st.sources)}, failing: {len(failing)}")
        lines += [f"  ✗ {x.source}: {x.last_error}" for x in failing[:5]]
        return "\n".join(lines)

    def list(self, _: str) -> str:
        import os

        from ._read import listing

        api_url = os.environ.get("PREFECT_API_URL")  # serve's own server
        found = listing(dict(self.triggers), api_url=api_url, s=self.settings)
        lines = [line] if (line := vacation_line(found)) else []
        lines += [f"{t.name} ({t.schedule}): {_state(t)}" for t in found.triggers]
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


def _state(t: TriggerLine) -> str:
    """A trigger's state in a chat line: as ``triggerflow list`` says it, with the reason."""
    if t.state == "paused":
        return str(t.pause) if t.pause else "paused (in Prefect)"
    if t.state in ("not configured", "unchecked", "broken") and t.problems:
        return f"{t.state}: {'; '.join(t.problems)}"
    return "state unknown (no Prefect server)" if t.state == "unknown" else t.state
