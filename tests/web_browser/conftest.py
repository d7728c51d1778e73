"""Fixtures of the browser tests: one Chromium per module, wiped between tests; the app's loop thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.web_browser.harness import UiLoop, chromium, forget_everything


@pytest.fixture(scope="module")
def ui_loop() -> Iterator[UiLoop]:
    """The loop the apps under test run on, one per module: it outlives the browser (see UiLoop.close)."""
    loop = UiLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def browser(ui_loop: UiLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Japanese Chromium for the whole module: starting one takes about a second."""
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), lang="ja")
    yield driver
    driver.quit()


@pytest.fixture
def driver(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The module's browser with no cookies or storage left from another test."""
    forget_everything(browser)
    yield browser
    forget_everything(browser)


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    path = tmp_path / "chromium-profile"
    path.mkdir()
    return path
