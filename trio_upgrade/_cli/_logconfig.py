"""``--log-config FILE``: logging configured by :func:`logging.config.dictConfig`,
from JSON, YAML (when PyYAML is importable) or TOML, told apart by the file's
extension, as uvicorn's ``--log-config`` does for JSON and YAML."""

from __future__ import annotations

import importlib
import json
import logging.config
from typing import Any

from ._settings import CLIError, load_config_file

__all__ = ["load_log_config"]


def _read(path: str) -> Any:
    lowered = path.lower()
    if lowered.endswith(".toml"):
        return load_config_file(path)
    if lowered.endswith((".yaml", ".yml")):
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            raise CLIError(f"--log-config {path}: YAML needs PyYAML (pip install pyyaml)") from None
        try:
            with open(path, encoding="utf-8") as file:
                return yaml.safe_load(file)
        except OSError as exc:
            raise CLIError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise CLIError(f"--log-config {path}: not valid YAML: {exc}") from None
    if lowered.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as file:
                return json.load(file)
        except OSError as exc:
            raise CLIError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CLIError(f"--log-config {path}: not valid JSON: {exc}") from None
    raise CLIError(f"--log-config {path}: expected a .json, .yaml, .yml or .toml file")


def load_log_config(path: str) -> None:
    """Configure logging from the dictConfig schema in *path*.

    ``version`` defaults to 1 and ``disable_existing_loggers`` to false: the
    package's loggers exist from the moment it is imported, and the
    standard library's default (true) would silence them.
    """
    config = _read(path)
    if not isinstance(config, dict):
        raise CLIError(f"--log-config {path}: expected a mapping (the dictConfig schema)")
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        cause = exc.__cause__
        detail = f"{exc}: {cause}" if cause is not None else str(exc)
        raise CLIError(f"--log-config {path}: {detail}") from None
