"""Build configuration that pyproject.toml cannot express: the optional C extension.

``trio_upgrade.ws._speedups`` unmasks received WebSocket frames in C. It is
optional: without a C compiler (or Python's headers) the build prints a warning,
skips it, and the package runs on wsproto's pure-Python masker. Set
``TRIO_UPGRADE_NO_EXTENSIONS=1`` to skip it on purpose.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("TRIO_UPGRADE_NO_EXTENSIONS"):
    ext_modules.append(
        Extension(
            "trio_upgrade.ws._speedups",
            sources=["trio_upgrade/ws/_speedups.c"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
