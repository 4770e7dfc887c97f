"""``python -m triggerflow`` is the ``triggerflow`` command."""

from .cli import main

raise SystemExit(main())
