"""Loading trigger files: a file that does not load is reported at the user's own line."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerflow._discovery import discover

GOOD = """from triggerflow import every, trigger


@trigger(schedule=every("1h"))
def fine():
    pass
"""


def test_errors_name_the_users_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "fine.py").write_text(GOOD)
    # A syntax error on line 7 of a 7-line file.
    (tmp_path / "typo.py").write_text(GOOD + "    x = (\n")
    # A bad schedule: triggerflow raises it, but the mistake is on the user's line 4.
    (tmp_path / "bad_every.py").write_text(GOOD.replace('every("1h")', 'every("1y")'))
    (tmp_path / "imports.py").write_text("\n\nimport no_such_module_here\n")
    found = discover(tmp_path)
    assert set(found.triggers) == {"fine"}  # the others never stop it
    errors = {p.name: why for p, why in found.errors.items()}
    assert errors["typo.py"].endswith("SyntaxError: '(' was never closed (line 7)"), errors
    assert "every('1y')" in errors["bad_every.py"] and errors["bad_every.py"].endswith("(line 4)")
    assert errors["imports.py"].endswith("No module named 'no_such_module_here' (line 3)")
    assert all(str(tmp_path) in why for why in errors.values())


def test_a_file_changed_within_the_same_second_to_the_same_size_loads_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve reloads a changed file; Python's .pyc check (mtime in whole seconds, size)
    took `every("45m")` for the `every("30m")` it had cached (seen in CI)."""
    import os
    import sys

    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE

    from triggerflow._discovery import load_file

    path = tmp_path / "changing.py"
    path.write_text(GOOD.replace('every("1h")', 'every("30m")'))
    stamp = os.stat(path).st_mtime_ns
    (first,) = load_file(path)
    path.write_text(GOOD.replace('every("1h")', 'every("45m")'))  # the same size
    os.utime(path, ns=(stamp, stamp))  # and the same second, as a quick editor does
    (second,) = load_file(path)
    assert first.schedule is not None and second.schedule is not None
    assert (first.schedule.describe(), second.schedule.describe()) == ("every 30m", "every 45m")
