"""``python -m trio_upgrade``: the same as the ``trio-upgrade`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
