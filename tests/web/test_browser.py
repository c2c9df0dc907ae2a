"""The web app in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by selenium logs in, chats, analyses a text and opens the dashboard.

Screenshots go to tests/artifacts/ (docs/web-chat.png in the README is one of them).
Without chromium the tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from bot.storage.records import Role
from bot.web.access import WEB_GUILD_ID
from tests.web.conftest import ARTIFACTS, GUILD_ID, PASSWORD, USERNAME, WebApp, require_module

pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")
WAIT_S = 60.0
# Every text the newest bot message shows, recorded by the page itself as it changes.
RECORD_BOT_TEXTS = """
window.botTexts = [];
new MutationObserver(() => {
  const bots = document.querySelectorAll('[data-testid="bot"]');
  if (bots.length) {
    const text = bots[bots.length - 1].innerText;
    if (window.botTexts[window.botTexts.length - 1] !== text) window.botTexts.push(text);
  }
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def wait_for(check: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # an element replaced while read: look again
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        message = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        import os

        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {message}")
        pytest.skip(message)
    return browser, driver


@pytest.fixture(scope="module")
def browser(web_app: WebApp) -> Iterator[Any]:
    """A headless Chromium, closed after the module."""
    require_module("selenium")
    binary, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def open_tab(driver: Any, name: str) -> None:
    from selenium.webdriver.common.by import By

    tab = wait_for(
        lambda: driver.find_element(By.XPATH, f"//button[@role='tab' and contains(., '{name}')]"),
        f"the {name} tab",
    )
    tab.click()


def test_login_is_required_and_works(web_app: WebApp, browser: Any) -> None:
    browser.get(web_app.url)
    fields = wait_for(lambda: css(browser, "input[type='password']"), "the login form")
    assert fields
    [user] = css(browser, "input[type='text']")
    user.send_keys(USERNAME)
    fields[0].send_keys("wrong password\n")
    wait_for(lambda: "incorrect" in browser.page_source.lower(), "the wrong-password message")
    browser.save_screenshot(str(ARTIFACTS / "web-login.png"))
    assert not css(browser, "textarea[placeholder='Type a message...']")  # no app behind it
    user, password = (
        css(browser, "input[type='text']")[0],
        css(browser, "input[type='password']")[0],
    )
    user.clear()
    user.send_keys(USERNAME)
    password.clear()
    password.send_keys(PASSWORD + "\n")
    wait_for(lambda: css(browser, "textarea[placeholder='Type a message...']"), "the chat page")


def test_chat_answer_streams_into_the_page(web_app: WebApp, browser: Any) -> None:
    question = f"hello from the browser {time.time_ns()}"
    browser.execute_script(RECORD_BOT_TEXTS)
    [box] = css(browser, "textarea[placeholder='Type a message...']")
    box.send_keys(question + "\n")

    def stored_answer() -> str | None:
        conversations = web_app.services.conversations
        for channel in web_app.call(conversations.channels(WEB_GUILD_ID)):
            turns = web_app.call(conversations.history(WEB_GUILD_ID, channel.channel_id, 10))
            if turns and turns[0].content == question and turns[-1].role is Role.ASSISTANT:
                return turns[-1].content
        return None

    answer = wait_for(stored_answer, "the answer stored in the session's web channel")
    shown = wait_for(
        lambda: [b.text for b in css(browser, "[data-testid='bot']") if b.text.strip() == answer],
        "the whole answer in the page",
    )
    assert shown
    seen: list[str] = browser.execute_script("return window.botTexts")
    # The page showed the answer as it grew, not only once complete.
    assert seen[-1].strip() == answer
    assert any(answer.startswith(text.strip()) and text.strip() != answer for text in seen), seen
    browser.save_screenshot(str(ARTIFACTS / "web-chat.png"))
    # Clear starts the conversation over: the page and the stored channel are emptied.
    css(browser, "button[aria-label='Clear']")[0].click()
    wait_for(lambda: stored_answer() is None, "the session's stored conversation to be deleted")
    assert not [b for b in css(browser, "[data-testid='bot']") if b.text.strip()]


def test_sentiment_shows_the_label(browser: Any) -> None:
    open_tab(browser, "Analyze")
    [text] = wait_for(lambda: css(browser, "#sentiment-text textarea"), "the sentiment box")
    text.send_keys("i love this, it is wonderful")
    css(browser, "#sentiment-run")[0].click()
    label = wait_for(
        lambda: [e.text for e in css(browser, "#sentiment-label") if "confident" in e.text],
        "the sentiment label",
    )
    assert "POSITIVE" in label[0].upper()
    browser.save_screenshot(str(ARTIFACTS / "web-analyze.png"))


def test_dashboard_behind_the_login_shows_a_guild(browser: Any) -> None:
    open_tab(browser, "Dashboard")
    [guild] = wait_for(lambda: css(browser, "#dashboard-guild input"), "the guild picker")
    guild.click()
    wait_for(
        lambda: [o for o in css(browser, "[role='option']") if o.text.strip() == str(GUILD_ID)],
        "the seeded guild among the choices",
    )[0].click()
    css(browser, "#dashboard-show")[0].click()
    settings = wait_for(
        lambda: [e.text for e in css(browser, "#dashboard-settings") if "threshold" in e.text],
        "the guild's settings",
    )
    assert "0.8" in settings[0]
    wait_for(lambda: "anger" in browser.page_source, "the flagged events in the table")
    browser.save_screenshot(str(ARTIFACTS / "web-dashboard.png"))
