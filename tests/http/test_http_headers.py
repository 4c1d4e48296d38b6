"""Headers and QueryParams: pure values, no trio."""

from __future__ import annotations

import pytest

from trio_upgrade.http import Headers, QueryParams


def test_lookup_ignores_case_and_returns_str() -> None:
    headers = Headers([("Content-Type", "text/plain"), ("X-A", "1")])
    assert headers["content-type"] == "text/plain"
    assert headers.get("CONTENT-TYPE") == "text/plain"
    assert "x-a" in headers and "X-A" in headers and b"x-a" in headers
    assert 42 not in headers
    assert headers.get("missing") is None
    assert headers.get("missing", "dflt") == "dflt"
    with pytest.raises(KeyError):
        headers["missing"]


def test_names_are_stored_lower_case_as_bytes() -> None:
    headers = Headers({"X-Token": "abc"})
    assert headers.raw == [(b"x-token", b"abc")]


def test_repeated_fields_are_kept_separately_and_joined_on_getitem() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("Other", "x")])
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert headers["Set-Cookie"] == "a=1, b=2"
    assert len(headers) == 3
    assert headers.items() == [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("other", "x")]
    assert headers.keys() == ["set-cookie", "other"]


def test_get_tokens_splits_comma_lists_across_fields_lower_cased() -> None:
    headers = Headers([("Connection", "keep-alive, Upgrade"), ("connection", " TE ,, ")])
    assert headers.get_tokens("connection") == ["keep-alive", "upgrade", "te"]
    assert headers.get_tokens("upgrade") == []


def test_values_are_latin1() -> None:
    headers = Headers([(b"x-name", "café".encode("latin-1"))])
    assert headers["x-name"] == "café"
    assert Headers({"x": "é"}).raw == [(b"x", b"\xe9")]


def test_add_keeps_existing_fields_and_set_replaces_them() -> None:
    headers = Headers({"a": "1"})
    headers.add("A", "2")
    assert headers.get_all("a") == ["1", "2"]
    headers.set("a", "3")
    assert headers.get_all("a") == ["3"]
    headers["B"] = "4"
    assert headers["b"] == "4"


def test_setdefault_adds_only_when_missing() -> None:
    headers = Headers({"a": "1"})
    assert headers.setdefault("A", "2") == "1"
    assert headers.setdefault("b", "2") == "2"
    assert headers.get_all("a") == ["1"] and headers["b"] == "2"


def test_remove_and_del() -> None:
    headers = Headers([("a", "1"), ("A", "2"), ("b", "3")])
    del headers["a"]
    assert "a" not in headers and headers["b"] == "3"
    headers.remove("nothing")  # no error
    with pytest.raises(KeyError):
        del headers["a"]


def test_update_replaces_every_field_of_each_incoming_name() -> None:
    headers = Headers([("a", "1"), ("a", "2"), ("b", "3")])
    headers.update([("a", "9"), ("c", "4")])
    assert headers.items() == [("b", "3"), ("a", "9"), ("c", "4")]


def test_from_raw_wraps_a_read_only_sequence_and_copies_on_change() -> None:
    raw = ((b"host", b"example"),)
    headers = Headers.from_raw(raw)
    headers.add("x", "1")
    assert raw == ((b"host", b"example"),)
    assert headers.items() == [("host", "example"), ("x", "1")]


def test_copy_is_independent_and_equality_compares_fields() -> None:
    headers = Headers({"a": "1"})
    copy = headers.copy()
    copy.add("b", "2")
    assert "b" not in headers
    assert headers == Headers([("A", "1")])
    assert headers != copy
    assert headers != {"a": "1"}
    assert Headers(headers) == headers and Headers(headers).raw is not headers.raw


def test_headers_are_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Headers())


def test_query_params_first_value_all_values_and_blanks() -> None:
    query = QueryParams("a=1&b=&a=2&c=x%20y&d=%E2%9C%93")
    assert query.get("a") == "1"
    assert query["a"] == "1"
    assert query.get_all("a") == ["1", "2"]
    assert query["b"] == ""
    assert query["c"] == "x y"
    assert query["d"] == "\u2713"
    assert "b" in query and "z" not in query
    assert query.get("z") is None and query.get("z", "0") == "0"
    assert list(query) == ["a", "b", "c", "d"]
    assert len(query) == 5
    assert query.items()[0] == ("a", "1")
    with pytest.raises(KeyError):
        query["z"]


def test_query_params_plus_is_a_space() -> None:
    assert QueryParams("q=a+b")["q"] == "a b"
