"""What the real-browser tests share: Debian's Chromium, headless, driven by selenium.

Without chromium, chromium-driver or selenium the tests are skipped, saying so;
CI installs them and sets ``PGQUEUE_REF_REQUIRE_BROWSER=1``, which turns the skip
into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REQUIRE_BROWSER_ENV = "PGQUEUE_REF_REQUIRE_BROWSER"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser_available() -> None:
    """Skips the test (fails it, with PGQUEUE_REF_REQUIRE_BROWSER=1) without a browser."""
    missing = _missing()
    if missing:
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"the browser test is required here, but {missing}")
        pytest.skip(missing)


def start_chromium(width: int = 1400, height: int = 1000, *flags: str, profile: str) -> Any:
    """A headless Chromium (selenium WebDriver) with a fresh profile under ``artifacts/``;
    the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}", *flags):  # fmt: skip
        options.add_argument(flag)
    ARTIFACTS.mkdir(exist_ok=True)
    folder = ARTIFACTS / f"chromium-profile-{profile}"
    shutil.rmtree(folder, ignore_errors=True)
    options.add_argument(f"--user-data-dir={folder}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="session")
def launch_chromium() -> Callable[..., Any]:
    """:func:`start_chromium` itself, for fixtures of a wider scope than ``chromium``."""
    return start_chromium


@pytest.fixture
def chromium(browser_available: None) -> Iterator[Callable[..., Any]]:
    """``chromium(width, height, *flags)``: a headless Chromium (selenium WebDriver), quit
    after the test."""
    drivers: list[Any] = []

    def start(width: int = 1400, height: int = 1000, *flags: str) -> Any:
        driver = start_chromium(width, height, *flags, profile=str(len(drivers)))
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
