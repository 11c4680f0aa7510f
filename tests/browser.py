"""A real headless Chromium for the tests that look at a page (Debian's chromium + chromium-driver; .ci/run installs
them): skipped with a reason on a machine without them, a failure in CI."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Offline and quiet: no background networking (refused here, many at a time), no first-run or sync traffic.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--window-size=1400,1000")


@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator[Any]:
    """A selenium Chrome driver on a fresh profile in `profile_dir`; quit on the way out."""
    binary, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver_bin):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing in CI (.ci/run installs them)")
        pytest.skip("apt-get install chromium chromium-driver to run the browser check")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        yield browser
    finally:
        browser.quit()
