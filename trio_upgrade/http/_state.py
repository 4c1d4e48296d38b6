"""``request.state``: values middleware passes to handlers, by attribute or by key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, final

__all__ = ["State"]


@final
class State(MutableMapping[str, Any]):
    """A namespace that is also a mapping: ``state.user = ...`` (Starlette's
    spelling) and ``state["user"] = ...`` set the same value, and either reads
    it back. Compares equal to a mapping with the same items.

    A name no one has set raises ``AttributeError`` (``KeyError`` by key). A
    value stored under the name of a mapping method (``state.items = ...``)
    hides that method on this object: read such names by key.
    """

    def __init__(self, values: Mapping[str, Any] | None = None, /) -> None:
        if values:
            self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not set: say what is there.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"state has no {name!r} (it has {', '.join(map(repr, self.__dict__)) or 'nothing'})"
        )

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict__[key] = value

    def __delitem__(self, key: str) -> None:
        del self.__dict__[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __len__(self) -> int:
        return len(self.__dict__)

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, State):
            return self.__dict__ == other.__dict__
        if isinstance(other, Mapping):
            return self.__dict__ == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> State:
        """A shallow copy."""
        return State(self.__dict__)

    def __repr__(self) -> str:
        return f"State({self.__dict__!r})"
