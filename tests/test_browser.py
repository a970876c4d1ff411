"""The demo in a real headless Chromium: streamed chat, a second device, live sync, edit, forget."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo_server import DemoServer

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
"""Debian's chromium (`make test` installs it when it can); CHROMIUM=path names another."""
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.browser


def require_chromium(path: str) -> None:
    """Skip (with a one-line reason) when there is no browser here; under CI=true, fail."""
    if Path(path).exists():
        return
    reason = f"no Chromium at {path}: apt-get install chromium (make test does, as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    require_chromium(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def test_two_devices_chat_edit_and_forget(
    chromium: object, server: DemoServer, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, Page, expect

    assert isinstance(chromium, Browser)
    phone = chromium.new_context().new_page()
    laptop = chromium.new_context().new_page()
    pages: list[Page] = [phone, laptop]
    for page in pages:
        page.set_default_timeout(10_000)
        page.on("dialog", lambda dialog: dialog.accept())

    def login(page: Page, user: str) -> None:
        page.goto(server.url)
        page.fill("#login-name", user)
        page.click("#login-button")
        expect(page.get_by_test_id("who")).to_have_text(f"logged in as {user}")

    def say(page: Page, text: str, reply: str) -> None:
        page.fill("#text", text)
        page.click("#send")
        expect(page.locator("#messages li.assistant").last).to_contain_text(reply)

    try:
        login(phone, "harsh")
        say(phone, "Find flights to Berlin", "When would you like to travel?")
        say(phone, "Next Tuesday", "Morning or evening?")
        say(phone, "Morning", "What's your budget?")
        phone.reload()  # the streamed answers were stored, not just shown
        expect(phone.locator("#messages li.assistant").last).to_have_text(
            "A morning departure. What's your budget?"
        )

        login(laptop, "harsh")  # the second device continues the same conversation
        expect(laptop.locator("#messages li.user").first).to_have_text("Find flights to Berlin")
        expect(laptop.locator("#messages li")).to_have_count(6)

        say(laptop, "Under $150", "Booking to Berlin")
        expect(phone.locator("#messages li")).to_have_count(8)  # live, without a reload
        expect(phone.locator("#messages li.assistant").last).to_contain_text("Booking to Berlin")

        laptop.get_by_test_id("edit-session-destination").click()
        laptop.get_by_test_id("input-session-destination").fill("Paris")
        laptop.get_by_test_id("input-session-destination").press("Enter")
        expect(laptop.locator('#state dd[data-key="destination"]')).to_have_text("Paris")
        say(laptop, "What do you remember?", "destination Paris")

        phone.get_by_test_id("forget").click()
        expect(phone.locator("#messages li.empty")).to_be_visible()
        expect(phone.get_by_test_id("state")).to_contain_text("nothing yet")
        laptop.reload()
        expect(laptop.locator("#messages li.empty")).to_be_visible()
    except Exception:
        for name, page in (("phone", phone), ("laptop", laptop)):
            page.screenshot(path=str(tmp_path / f"failure-{name}.png"), full_page=True)
        raise


def test_a_correction_in_words_and_a_stale_fact_asked_about_again(
    chromium: object, server: DemoServer, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)

    def say(text: str, reply: str) -> None:
        page.fill("#text", text)
        page.click("#send")
        expect(page.locator("#messages li.assistant").last).to_contain_text(reply)

    try:
        page.goto(server.url)
        page.fill("#login-name", "mia")
        page.click("#login-button")
        expect(page.get_by_test_id("who")).to_have_text("logged in as mia")

        say("I live in San Francisco", "you live in San Francisco")
        expect(page.get_by_test_id("age-user-home")).to_have_text("just now")
        say("Find flights to Berlin", "When would you like to travel?")
        say("Actually make it Munich", "Changed destination to Munich (was Berlin).")
        expect(page.locator('#state dd[data-key="destination"]')).to_have_text("Munich")
        say("change the date to Friday", "Changed date to Friday.")
        expect(page.locator('#state dd[data-key="date"]')).to_have_text("Friday")

        server.advance_clock(15 * 86400)  # two weeks and a day later: the home may have changed
        page.reload()
        expect(page.get_by_test_id("age-user-home")).to_have_text("15 days ago · still true?")
        say("Hi", "By the way: Are you still in San Francisco?")
        say("No, I moved to Lisbon", "Updated: you live in Lisbon (was San Francisco).")
        expect(page.locator('#user-state dd[data-key="home"]')).to_have_text("Lisbon")
        expect(page.get_by_test_id("age-user-home")).to_have_text("just now")
    except Exception:
        page.screenshot(path=str(tmp_path / "failure-stale.png"), full_page=True)
        raise
    finally:
        context.close()  # its live feed ends, so the server stops at once


def test_without_a_browser_the_browser_tests_skip_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^no Chromium at .*nowhere: apt-get"):
        require_chromium(str(tmp_path / "nowhere"))


def test_under_ci_a_missing_browser_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^CI=true but no Chromium at"):
        require_chromium(str(tmp_path / "nowhere"))
