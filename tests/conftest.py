"""Shared test set-up: figures go to files through matplotlib's Agg backend, never a window."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

# Set before any test module imports matplotlib (gradtrace.plots also selects Agg itself).
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

# The suite runs many small tensor operations: one thread avoids thread start-up and contention
# on a small shared machine (a 300 x 300 Mandelbrot took 11 s on two threads, 0.4 s on one).
torch.set_num_threads(1)


# ---------------------------------------------------------------- a real headless browser
# Debian's Chromium (`apt-get install chromium`, which .ci/run does), driven by the Playwright
# package. Never `playwright install`: it downloads a browser. The flags keep Chromium off the
# network it would otherwise try at start-up (this machine refuses those connections).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session (a `playwright.sync_api.Browser`)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh page in its own context (no shared cookies, storage or routes)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
