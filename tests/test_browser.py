"""The Space in a real browser (Debian's chromium driven by Playwright): upload, pick, paint, stylize, examples, errors.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``: the system chromium
is used). A tiny random model serves the requests; screenshots are saved under each test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import warnings
from pathlib import Path

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("browser tests need playwright (pip install playwright; no `playwright install`)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from hybridstyle import HybridStyle  # noqa: E402

pytestmark = pytest.mark.slow

# Offline and quiet: no background downloads, no GPU, root in a container needs --no-sandbox.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)  # the machine may be busy; the default 5 s is tight for a page plus a request


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch.manual_seed(0)
    model = HybridStyle(block_out_channels=(4, 8, 16, 32), layers_per_block=(1, 1, 1, 1))
    demo = app.build_demo(model, tmp_path_factory.mktemp("served"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server)
    page.wait_for_selector("#run")
    yield page
    page.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def upload_content(page, path: str) -> None:
    page.locator("#content input[type=file]").set_input_files(path)
    expect(page.locator("#content img")).to_be_visible()


def pick_artwork(page, index: int, slot: int) -> None:
    page.locator("#gallery button.thumbnail-item").nth(index).click()
    expect(page.locator(f"#style{slot} img")).to_be_visible()


def wait_for_result(page) -> str:
    """Wait until the compare slider shows both images and the status line is written; return the status."""
    expect(page.locator("#result img")).to_have_count(2)
    expect(page.locator("#status")).to_contain_text(" in ")
    return page.locator("#status").inner_text()


def screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_upload_pick_stylize_download(page, tmp_path):
    upload_content(page, app.EXAMPLES["content"][0].path)
    pick_artwork(page, 0, slot=1)
    page.click("#run")
    status = wait_for_result(page)
    assert "512x288" in status and f"{app.EXAMPLES['styles'][0].title} 100%" in status
    expect(page.locator("#download")).to_contain_text("gc_animal_kitten_stylized")
    with page.expect_download() as download:
        page.locator("#download a").first.click()
    saved = tmp_path / "download.png"
    download.value.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    screenshot(page, tmp_path / "app.png")


def test_paint_a_region(page, tmp_path):
    upload_content(page, app.EXAMPLES["content"][1].path)
    pick_artwork(page, 0, slot=1)
    pick_artwork(page, 2, slot=2)
    page.get_by_text("Region styles: paint where style 1 goes").click()
    region_on = page.get_by_label("Use the painted region")
    expect(page.locator("#region img, #region canvas").first).to_be_visible()
    assert not region_on.is_checked()
    page.locator("#region button[aria-label=Brush]").click()
    box = page.locator("#region canvas").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 150, steps=4)
    page.mouse.up()
    expect(region_on).to_be_checked()  # painting switches regions on
    page.click("#run")
    status = wait_for_result(page)
    assert "in the painted region" in status and "the rest fused from the other styles" in status
    screenshot(page, tmp_path / "region.png")


def test_example_row_runs_on_click(page, tmp_path):
    page.get_by_text("Examples: click a row to run it").scroll_into_view_if_needed()
    page.locator("table tbody tr").first.click()
    status = wait_for_result(page)
    assert "Van Gogh, The Starry Night 100%" in status
    expect(page.locator("#style1 img")).to_be_visible()
    screenshot(page, tmp_path / "example.png")


def test_missing_input_shows_an_error_and_the_app_keeps_working(page):
    page.click("#run")
    expect(page.get_by_text(app.NO_CONTENT).first).to_be_visible()
    upload_content(page, app.EXAMPLES["content"][2].path)
    page.click("#run")
    expect(page.get_by_text(app.NO_STYLE).first).to_be_visible()
    pick_artwork(page, 4, slot=1)
    page.click("#run")
    assert "512x288" in wait_for_result(page)
