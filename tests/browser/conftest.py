"""Fixtures for the console tests: Debian's Chromium driven by Playwright, against the real stack.

The stack is the job tests' (tests/jobs/conftest.py): the app under gunicorn, a real rq worker and
a private Redis database, over a copy of the session's two-version registry, with MNIST's t10k
files in DATA_DIR (the dataset the base models were trained on, so a retrain can name it and the
evaluation endpoint finds each version's dev split).

The browser is ``/usr/bin/chromium`` (apt package ``chromium``); Playwright never downloads one.
Each page records console errors and any request that would leave 127.0.0.1 (those are aborted);
``Watched.assert_clean`` checks both. Screenshots go to tests/browser/screenshots/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.jobs.conftest import Stack, make_stack  # noqa: F401 - the fixture, re-exported for these tests
from tests.support import MNIST_DIR

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).with_name("screenshots")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium) to run the console "
                f"tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")


@dataclass
class Watched:
    """A page and what it did wrong: console errors, uncaught exceptions, requests off the host."""

    page: sync_api.Page
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)

    def assert_clean(self, allowed: Callable[[str], bool] = lambda message: False) -> None:
        assert not self.outside_requests, f"requests that left 127.0.0.1: {self.outside_requests}"
        errors = [message for message in self.console_errors if not allowed(message)]
        assert not errors, f"console errors: {errors}"

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="session")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        # Chromium's sandbox needs user namespaces, which containers running as root often lack.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield browser
        browser.close()


@pytest.fixture()
def console_stack(make_stack: Callable[..., Stack]) -> Stack:  # noqa: F811 - the re-exported fixture
    # Progress is reported per chunk: 100-row chunks give a 2,000-row upload twenty updates.
    stack = make_stack(workers=1, SCORING_CHUNK_ROWS="100")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(MNIST_DIR / name, stack.data_dir / name)
    return stack


@pytest.fixture()
def open_page(browser: sync_api.Browser, console_stack: Stack) -> Iterator[Callable[..., Watched]]:
    """Factory: ``open_page(path, viewport=DESKTOP)`` -> a Watched page of a fresh browser context."""
    contexts: list[sync_api.BrowserContext] = []

    def open_(path: str, viewport: dict[str, int] = DESKTOP) -> Watched:
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        watched = Watched(page)

        def guard(route: sync_api.Route) -> None:
            host = urlsplit(route.request.url).hostname
            if host == "127.0.0.1":
                route.continue_()
            else:
                watched.outside_requests.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page.on("console", lambda message: message.type == "error" and watched.console_errors.append(message.text))
        page.on("pageerror", lambda error: watched.console_errors.append(f"uncaught: {error}"))
        page.goto(console_stack.url + path)
        return watched

    yield open_
    for context in contexts:
        context.close()
