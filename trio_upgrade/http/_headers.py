"""Case-insensitive, multi-valued HTTP headers kept as raw bytes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Union, final, overload

__all__ = ["Headers", "HeadersLike"]

HeadersLike = Union[
    "Headers",
    Mapping[str, str],
    Iterable[tuple[str, str]],
    Iterable[tuple[bytes, bytes]],
]


def _name(name: str | bytes) -> bytes:
    return (name.encode("latin-1") if isinstance(name, str) else name).lower()


def _value(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


@final
class Headers:
    """An ordered list of ``(name, value)`` header fields.

    Look-ups ignore case (``headers["content-type"]``, ``headers.get("Host")``)
    and return ``str`` (decoded as latin-1, as RFC 9110 §5.5 allows for field
    values). A name that appears more than once is kept as separate fields:
    :meth:`get_all` returns every value, ``headers[name]`` joins them with
    ``", "``. :attr:`raw` is the underlying list of lower-cased byte pairs, as
    h11 produces and consumes it.
    """

    __slots__ = ("raw",)

    def __init__(self, headers: HeadersLike | None = None) -> None:
        # A list, or (for request headers) h11's own read-only sequence, copied
        # into a list on first change.
        self.raw: Sequence[tuple[bytes, bytes]]
        if headers is None:
            self.raw = []
        elif isinstance(headers, Headers):
            self.raw = list(headers.raw)
        elif isinstance(headers, Mapping):
            self.raw = [(_name(k), _value(v)) for k, v in headers.items()]
        else:
            self.raw = [(_name(k), _value(v)) for k, v in headers]

    @classmethod
    def from_raw(cls, raw: Sequence[tuple[bytes, bytes]]) -> Headers:
        """Wrap a list of lower-cased ``(name, value)`` byte pairs without copying."""
        self = cls.__new__(cls)
        self.raw = raw
        return self

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of *name* (several fields joined with ``", "``), or *default*."""
        key = _name(name)
        found = [v for k, v in self.raw if k == key]
        if not found:
            return default
        if len(found) == 1:
            return found[0].decode("latin-1")
        return b", ".join(found).decode("latin-1")

    def get_all(self, name: str) -> list[str]:
        """Every value of *name*, one per field, in order."""
        key = _name(name)
        return [v.decode("latin-1") for k, v in self.raw if k == key]

    def get_tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of every *name* field, stripped and lower-cased.

        For list-valued headers such as ``Connection`` or ``Upgrade``.
        """
        key = _name(name)
        tokens: list[str] = []
        for k, v in self.raw:
            if k == key:
                tokens.extend(
                    t.strip().lower() for t in v.decode("latin-1").split(",") if t.strip()
                )
        return tokens

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        key = _name(name)
        return any(k == key for k, _ in self.raw)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for k, v in self.raw:
            yield k.decode("latin-1"), v.decode("latin-1")

    def __len__(self) -> int:
        return len(self.raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self.raw == other.raw
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        """Distinct names, lower-cased, in first-seen order."""
        return list(dict.fromkeys(k.decode("latin-1") for k, _ in self.raw))

    def items(self) -> list[tuple[str, str]]:
        """Every field as ``(name, value)``; repeated names appear repeatedly."""
        return list(self)

    def copy(self) -> Headers:
        return Headers.from_raw(list(self.raw))

    # Mutation (response headers are built by handlers and middleware).

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any existing fields of that name."""
        if not isinstance(self.raw, list):
            self.raw = list(self.raw)
        self.raw.append((_name(name), _value(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every field named *name* with one field."""
        key = _name(name)
        self.raw = [(k, v) for k, v in self.raw if k != key]
        self.raw.append((key, _value(value)))

    def setdefault(self, name: str, value: str) -> str:
        """Add *name* unless present; return its value."""
        existing = self.get(name)
        if existing is not None:
            return existing
        self.add(name, value)
        return value

    def remove(self, name: str) -> None:
        """Remove every field named *name* (no error if there is none)."""
        key = _name(name)
        self.raw = [(k, v) for k, v in self.raw if k != key]

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.remove(name)

    def update(self, other: HeadersLike) -> None:
        """Set every name in *other*, replacing fields of the same names here."""
        incoming = Headers(other)
        names = {k for k, _ in incoming.raw}
        self.raw = [(k, v) for k, v in self.raw if k not in names] + list(incoming.raw)

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
