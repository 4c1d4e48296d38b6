from __future__ import annotations

from pathlib import Path

import pytest
from _cli_procs import DEMO_APP, DEMO_ASGI_APP


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A directory holding ``demo:app`` (native) and ``demo_asgi:app``."""
    (tmp_path / "demo.py").write_text(DEMO_APP)
    (tmp_path / "demo_asgi.py").write_text(DEMO_ASGI_APP)
    return tmp_path
