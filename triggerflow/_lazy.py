"""Names of a package loaded on first use (PEP 562): one helper for every facade.

``import triggerflow`` and ``from triggerflow.sources import rss`` then cost only what
they use: the parse workers and a feed poll never import Prefect (~1.5 s, 80 MB).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, home: Mapping[str, str | tuple[str, str]], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    ``home`` maps each public name to the module under ``triggerflow`` that defines it,
    or to (that module, its name there); ``namespace`` is the package's ``globals()``,
    where a loaded name is kept.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's name
        where = home.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where if isinstance(where, tuple) else (where, name)
        value = getattr(importlib.import_module(f"triggerflow.{module}"), attr)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *home})

    return __getattr__, __dir__
