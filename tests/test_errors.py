"""One exception root: every exception class trio_upgrade defines derives from
``trio_upgrade.TrioUpgradeError``, and keeps the builtin base it had."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import trio_upgrade
from trio_upgrade import TrioUpgradeError

# Importing ``__main__`` would run the command line.
_NOT_IMPORTED = {"trio_upgrade.__main__"}

# Public classes defined in modules another change owns. Each entry must go
# when its class joins the tree (the test below fails while an entry is stale).
_NOT_YET_UNDER_THE_ROOT: set[str] = set()


def _package_exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    modules = [trio_upgrade.__name__] + [
        info.name
        for info in pkgutil.walk_packages(trio_upgrade.__path__, f"{trio_upgrade.__name__}.")
        if info.name not in _NOT_IMPORTED
    ]
    for name in modules:
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            # Only classes defined here, not those a module imported. Private
            # classes (``_Abort``) are control-flow signals raised and caught
            # inside their module; they never reach a caller.
            if (
                value.__module__ == name
                and issubclass(value, BaseException)
                and not value.__name__.startswith("_")
            ):
                found[f"{name}.{value.__qualname__}"] = value
    return found


CLASSES = _package_exception_classes()


def test_the_walk_finds_every_layer_s_errors() -> None:
    """The module walk reaches every layer (a walk that found nothing would pass anything)."""
    for expected in (
        "trio_upgrade._wire._errors.InvalidField",
        "trio_upgrade._wire._errors.FramingError",
        "trio_upgrade.core._errors.BindError",
        "trio_upgrade.http._errors.HTTPError",
        "trio_upgrade.http._errors.ClientDisconnected",
        "trio_upgrade.ws._errors.WebSocketError",
        "trio_upgrade.proxy._errors.ProxyError",
        "trio_upgrade.testing._errors.ServerDisconnected",
        "trio_upgrade.testing._errors.WebSocketRejected",
    ):
        assert expected in CLASSES, expected


def test_every_exception_class_derives_from_the_root() -> None:
    outside = sorted(
        name
        for name, cls in CLASSES.items()
        if not issubclass(cls, TrioUpgradeError) and name not in _NOT_YET_UNDER_THE_ROOT
    )
    assert outside == []


def test_the_exception_lists_name_only_classes_that_need_them() -> None:
    """An exempt class that no longer exists, or that has joined the tree, leaves the list."""
    for name in _NOT_YET_UNDER_THE_ROOT:
        assert name in CLASSES, f"{name} is gone: drop it from the list"
        assert not issubclass(CLASSES[name], TrioUpgradeError), f"{name} is under the root now"


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("trio_upgrade._wire._errors.InvalidField", ValueError),
        ("trio_upgrade._wire._errors.FramingError", ValueError),
        ("trio_upgrade.core._errors.BindError", ValueError),
        ("trio_upgrade.testing._errors.ServerDisconnected", ConnectionError),
    ],
)
def test_classes_keep_their_builtin_base(name: str, builtin: type[Exception]) -> None:
    assert issubclass(CLASSES[name], builtin)


def test_the_root_is_the_same_object_from_every_place_that_exports_it() -> None:
    from trio_upgrade import _wire, core

    assert trio_upgrade.TrioUpgradeError is core.TrioUpgradeError is _wire.TrioUpgradeError


def test_a_layer_error_is_caught_by_the_root() -> None:
    from trio_upgrade.core import parse_bind

    with pytest.raises(TrioUpgradeError):
        parse_bind("no-port-here")
