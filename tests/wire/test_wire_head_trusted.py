"""response_head's trusted lines: written after the checked fields, as given."""

from __future__ import annotations

import pytest

from trio_upgrade._wire import InvalidField, response_head


def test_trusted_lines_follow_the_checked_fields_unchanged() -> None:
    head = response_head(200, [(b"x-a", b"1")], trusted=b"content-length: 2\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n"


def test_the_callers_fields_are_still_checked_with_trusted_lines() -> None:
    with pytest.raises(InvalidField):
        response_head(200, [(b"x-a", b"1\r\nx-b: 2")], trusted=b"date: now\r\n")
