"""Browser tests: Playwright drives Debian's Chromium against a live server.

Screenshots of key pages land in artifacts/screenshots/ for a person to look at.
"""

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import DEMO_PASSWORD

# Playwright's sync API keeps an event loop on the test thread; the test's own ORM calls
# are still synchronous, so Django's async-safety guard does not apply to them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.fail("Debian's chromium is required for browser tests: apt-get install -y chromium")


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_for(browser, live_server):
    """A fresh browser context per person, logged in through the real login form."""
    contexts = []
    errors: list[str] = []

    def open_as(username: str):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: _keep_script_errors(message, errors))
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", DEMO_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    open_as.errors = errors
    yield open_as
    for context in contexts:
        context.close()
    assert errors == [], f"the pages logged errors (CSP violations, scripts): {errors}"


def _keep_script_errors(message, errors: list[str]) -> None:
    """Record script errors and CSP violations; refused HTTP statuses are asserted by tests."""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
