"""trio_upgrade.core exports exactly the names the layer promises, each documented."""

from __future__ import annotations

import trio_upgrade.core as core

PROMISED = {
    "Bind",
    "BindError",
    "Connection",
    "ConnectionHandler",
    "Observer",
    "OverloadResponse",
    "PrefixedStream",
    "Server",
    "Shutdown",
    "TrioUpgradeError",
    "configure_logging",
    "current_connection",
    "listener_address",
    "open_listeners",
    "open_unix_listener",
    "parse_bind",
    "run_until_signal",
}


def test_core_all_is_exactly_the_promised_names() -> None:
    assert set(core.__all__) == PROMISED
    assert len(core.__all__) == len(PROMISED)


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in core.__all__:
        obj = getattr(core, name)
        if name in ("ConnectionHandler", "OverloadResponse"):  # type aliases: no docstring
            continue
        assert obj.__doc__, f"{name} has no docstring"


def test_implementation_modules_are_private() -> None:
    public_modules = [
        name
        for name, value in vars(core).items()
        # pytest's assertion rewriting (the package is a pytest plugin) adds
        # "@py_builtins"-style globals: not modules of ours.
        if type(value).__name__ == "module" and not name.startswith(("_", "@"))
    ]
    assert public_modules == []
