"""Take the screenshot of the chat page shown in docs/chat.md.

    .venv/bin/python tests/chat/screenshot.py [docs/img/chat.png]

Starts the chat on a free loopback port, has three people talk in a room with
Debian's Chromium (the browser tests' setup), and saves what one of them sees.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _chat_helpers import REPO, ChatProcess, free_port
from playwright.sync_api import Page, expect, sync_playwright
from test_chat_browser import CHROMIUM, CHROMIUM_ARGS


def main(out: Path) -> None:
    server = ChatProcess(free_port())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            pages: dict[str, Page] = {}
            for nick, room in [
                ("maya", "design"),
                ("alice", "general"),
                ("bob", "general"),
                ("chen", "general"),
            ]:
                context = browser.new_context(
                    viewport={"width": 1100, "height": 620}, color_scheme="light"
                )
                page = context.new_page()
                page.goto(server.url)
                expect(page.locator("#status")).to_have_attribute("data-state", "connected")
                page.fill("#nick", nick)
                page.fill("#room", room)
                page.click("#join")
                expect(page.locator("#room-title")).to_have_text(f"#{room}")
                pages[nick] = page
            script = [
                ("alice", "Morning! Is the release still on for today?"),
                ("bob", "Yes: the WebSocket tests are green on CI."),
                ("chen", "I'm looking at the slow-client policy: a full queue closes with 1013."),
                ("alice", "Nice. And graceful shutdown sends 1001, so pages reconnect."),
                ("bob", "Try it: restart the server and watch the status in the corner."),
            ]
            for nick, text in script:
                pages[nick].fill("#text", text)
                pages[nick].press("#text", "Enter")
                expect(pages["alice"].locator("#log .message .text").last).to_have_text(text)
            pages["chen"].context.close()
            expect(pages["alice"].locator("#members li")).to_have_count(2)
            pages["alice"].screenshot(path=str(out))
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "img" / "chat.png")
