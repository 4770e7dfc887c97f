"""Find the triggers in the flows directory.

Each ``*.py`` file is imported under its own module name (``flows.<stem>``, so
Prefect can find the file again when a deployment runs) and every
:class:`Trigger` it defines at top level is collected. A file that fails to
import is reported by name with its error, and the others still load.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ._trigger import Trigger
from .exceptions import FlowsLoadError, TriggerNotFound


@dataclass
class Discovered:
    """The triggers found, and the files that could not be loaded."""

    triggers: dict[str, Trigger] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def load_file(path: Path) -> list[Trigger]:
    """Import one flows file (again, if it was imported before) and return its triggers.

    Raises:
        FlowsLoadError: it does not import; the message names the file and the line of
            *that file* where it went wrong.
    """
    name = f"{path.parent.name}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowsLoadError(f"flows file {path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        # From the source every time, never a cached .pyc: Python trusts a .pyc whose
        # recorded source mtime (whole seconds) and size match, so a file changed twice
        # within one second to the same size (`every("30m")` → `every("45m")`) kept
        # running its older code in serve.
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except Exception as e:
        del sys.modules[name]
        raise FlowsLoadError(f"flows file {path}: {_describe(e, path)}") from e
    return [v for v in vars(module).values() if isinstance(v, Trigger)]


def _describe(e: BaseException, path: Path) -> str:
    """``SyntaxError: invalid syntax (line 7)``, the line being one of the user's file.

    A SyntaxError carries its own position (its traceback is the import machinery's);
    any other error is placed at the deepest frame of the user's file, not at
    triggerflow's line that raised it (a bad ``every()`` is the caller's mistake).
    """
    if isinstance(e, SyntaxError):
        where = f"line {e.lineno}" if e.lineno else "unknown line"
        if e.filename and Path(e.filename).resolve() != path.resolve():
            where = f"{e.filename}, {where}"
        return f"{type(e).__name__}: {e.msg} ({where})"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def discover(flows_dir: Path) -> Discovered:
    """Import every ``*.py`` in ``flows_dir`` (not starting with ``_``) and collect triggers."""
    found = Discovered()
    if not flows_dir.is_dir():
        return found
    for path in sorted(flows_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            triggers = load_file(path.resolve())
        except FlowsLoadError as e:
            found.errors[path] = str(e)
            continue
        for t in triggers:
            if t.name in found.triggers and found.files[t.name] != path:
                found.errors[path] = (
                    f"flows file {path}: trigger {t.name!r} is also defined in "
                    f"{found.files[t.name]}; rename one of them"
                )
                continue
            found.triggers[t.name] = t
            found.files[t.name] = path
    return found


def find(flows_dir: Path, name: str) -> Trigger:
    """The trigger called ``name`` (dashes and underscores are interchangeable).

    Raises:
        TriggerNotFound: with the names that do exist.
    """
    found = discover(flows_dir)
    wanted = name.replace("-", "_")
    for tname, t in found.triggers.items():
        if tname.replace("-", "_") == wanted:
            return t
    known = ", ".join(sorted(found.triggers)) or "none"
    hint = "".join(f"\n  {why}" for why in found.errors.values())
    raise TriggerNotFound(f"no trigger named {name!r} in {flows_dir} (found: {known}){hint}")
