"""The chat page in a real browser: Debian's Chromium driven by Playwright.

Playwright's own browser download cannot work here, so the tests launch
``/usr/bin/chromium`` (scripts/test installs it with apt-get) and are skipped,
saying why, only when it is missing. The server runs as a child process so
that a test can stop it and start it again on the same port.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from _chat_helpers import ChatProcess, free_port
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
# Playwright's auto-waiting assertions wait this long (ms) before failing.
TIMEOUT = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (scripts/test installs it with apt-get)")
    expect.set_options(timeout=TIMEOUT)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server() -> Iterator[ChatProcess]:
    proc = ChatProcess(free_port())
    try:
        yield proc
    finally:
        proc.stop()


def open_page(browser: Browser, url: str) -> Page:
    """A page in a context of its own: its own storage, like another person's browser."""
    context = browser.new_context(viewport={"width": 1100, "height": 650})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    return page


def join(page: Page, nick: str, room: str) -> None:
    page.fill("#nick", nick)
    page.fill("#room", room)
    page.click("#join")
    expect(page.locator("#room-title")).to_have_text(f"#{room}")


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_two_pages_talk_in_one_room_and_see_presence(browser: Browser, server: ChatProcess) -> None:
    alice = open_page(browser, server.url)
    bob = open_page(browser, server.url)
    try:
        join(alice, "alice", "lobby")
        join(bob, "bob", "lobby")
        expect(alice.locator("#members li")).to_have_text(["alice", "bob"])
        expect(alice.locator("#log .notice").last).to_have_text("bob joined")
        expect(bob.locator("#rooms button[data-room=lobby] .badge")).to_have_text("2")

        say(alice, "hello from alice <b>not bold</b>")
        last = bob.locator("#log .message").last
        expect(last.locator(".nick")).to_have_text("alice")
        expect(last.locator(".text")).to_have_text("hello from alice <b>not bold</b>")
        assert bob.locator("#log .message b.nick + .text b").count() == 0  # text, not HTML
        expect(alice.locator("#text")).to_have_value("")

        bob.context.close()
        expect(alice.locator("#members li")).to_have_text(["alice"])
        expect(alice.locator("#log .notice").last).to_have_text("bob left")
        expect(alice.locator("#count")).to_have_text("(1)")
    finally:
        alice.context.close()


def test_a_late_arrival_sees_history_and_a_taken_nickname_is_explained(
    browser: Browser, server: ChatProcess
) -> None:
    alice = open_page(browser, server.url)
    other = open_page(browser, server.url)
    try:
        join(alice, "alice", "history")
        texts = [f"message {i}" for i in range(3)]
        for text in texts:
            say(alice, text)
        expect(alice.locator("#log .message .text")).to_have_text(texts)

        other.fill("#nick", "Alice")
        other.fill("#room", "history")
        other.click("#join")
        expect(other.locator("#error")).to_contain_text("already in #history")
        join(other, "carol", "history")
        expect(other.locator("#log .message .text")).to_have_text(texts)
    finally:
        alice.context.close()
        other.context.close()


def test_the_page_reconnects_after_a_server_restart(browser: Browser, server: ChatProcess) -> None:
    page = open_page(browser, server.url)
    try:
        join(page, "dora", "restart")
        say(page, "before the restart")
        expect(page.locator("#log .message .text").last).to_have_text("before the restart")

        # Graceful shutdown: the page gets 1001 and says it is reconnecting.
        assert server.stop() == 0
        status = page.locator("#status")
        expect(status).to_have_attribute("data-state", "reconnecting")
        expect(status).to_contain_text("The server is restarting")
        expect(page.locator("#text")).to_be_disabled()

        restarted = ChatProcess(server.port)
        try:
            # The next attempt comes after the backoff (at most 15 s, +25 % jitter).
            expect(status).to_have_attribute("data-state", "connected", timeout=40_000)
            # The page joins its room again by itself, under the same nickname.
            expect(page.locator("#room-title")).to_have_text("#restart")
            expect(page.locator("#members li")).to_have_text(["dora"])
            say(page, "after the restart")
            expect(page.locator("#log .message .text").last).to_have_text("after the restart")
        finally:
            restarted.stop()
    finally:
        page.context.close()
