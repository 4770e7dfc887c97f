"""``run_sync``: the bridge must not leave its own traces on the coroutine's errors."""

from __future__ import annotations

import asyncio

import pytest

from triggerflow._async import run_sync


async def _fails() -> None:
    try:
        raise OSError("connection refused")
    except OSError:
        raise ValueError("the real reason")  # noqa: B904 - an implicit chain on purpose


def test_an_error_keeps_its_own_chain_and_nothing_of_the_bridge() -> None:
    """The loop lookup's RuntimeError once became every error's ``__context__`` (issue 15)."""
    with pytest.raises(ValueError, match="the real reason") as raised:
        run_sync(_fails())
    context = raised.value.__context__
    assert isinstance(context, OSError) and str(context) == "connection refused"
    assert context.__context__ is None and context.__cause__ is None


def test_inside_a_running_loop_it_runs_in_a_thread_and_chains_the_same() -> None:
    async def caller() -> BaseException:
        with pytest.raises(ValueError) as raised:
            run_sync(_fails())
        return raised.value

    err = asyncio.run(caller())
    assert isinstance(err.__context__, OSError) and err.__context__.__context__ is None


def test_returns_the_result() -> None:
    async def seven() -> int:
        return 7

    assert run_sync(seven()) == 7
