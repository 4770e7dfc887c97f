"""Who holds a claim on deliveries, and whether that process still lives.

A claim is written with its owner, ``host:pid:start``, where ``start`` is the process's
start time in clock ticks since boot (``/proc/<pid>/stat``, field 22): a PID the
kernel reused for another process does not pass for the owner. Only an owner on this
host can be known dead; one on another machine holds its claim until its lease ends.
"""

from __future__ import annotations

import os
import socket
from functools import cache


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


@cache
def _host() -> str:
    return socket.gethostname()


def this_process() -> str:
    """This process as a claim owner, ``host:pid:start``."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{_start_ticks(pid) or ''}"


def pid_of(owner: str) -> int | None:
    """The PID in ``owner`` (for messages), None if it is not one of ours."""
    try:
        return int(owner.split(":")[-2])
    except (IndexError, ValueError):
        return None


def is_dead(owner: str | None) -> bool:
    """True only when ``owner`` ran on this host and that process is gone."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) < 3:
        return False
    host, pid_text, start = ":".join(parts[:-2]), parts[-2], parts[-1]
    if host != _host():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    now_start = _start_ticks(pid)
    if now_start is not None:
        return bool(start) and now_start != start  # the PID lives on as another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, as another user's process
    return False
