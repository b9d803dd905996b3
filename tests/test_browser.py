"""The Space in a real browser (Debian's chromium driven by Playwright): upload, pick, paint, stylize, examples, errors.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``: the system chromium
is used). A tiny random model serves the requests; screenshots are saved under each test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
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

from conftest import serve_on_a_free_port  # noqa: E402

import app  # noqa: E402
from hybridstyle import HybridStyle  # noqa: E402

pytestmark = pytest.mark.slow

# Offline and quiet: no background downloads, no GPU, root in a container needs --no-sandbox.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)  # the machine may be busy; the default 5 s is tight for a page plus a request


@pytest.fixture(scope="module")
def served_demo(tmp_path_factory):
    """The app on a tiny random model, served on a free port; its handlers are ``served_demo.style_app``."""
    torch.manual_seed(0)
    model = HybridStyle(block_out_channels=(4, 8, 16, 32), layers_per_block=(1, 1, 1, 1))
    demo = app.build_demo(model, tmp_path_factory.mktemp("served"))
    demo.test_url = serve_on_a_free_port(app.launch, demo)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def server(served_demo):
    return served_demo.test_url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# Counts, per trigger id, the unqueued event responses (/run/predict) the page has read and handled: the count goes up
# in a task queued after the response's JSON is delivered, so after the page's own code has applied its updates.
HANDLED_RESPONSES = """
window.__handled = {};
const originalFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await originalFetch(...args);
  const url = String(args[0] && args[0].url ? args[0].url : args[0]);
  const body = args[1] && typeof args[1].body === "string" ? args[1].body : "";
  const trigger = (body.match(/"trigger_id":\\s*(\\d+)/) || [])[1];
  if (url.includes("/run/predict") && trigger !== undefined) {
    const json = response.json.bind(response);
    response.json = async () => {
      const value = await json();
      setTimeout(() => { window.__handled[trigger] = (window.__handled[trigger] || 0) + 1; }, 0);
      return value;
    };
  }
  return response;
};
"""


def handled(page, trigger_id: int) -> int:
    return page.evaluate(f"() => window.__handled[{trigger_id}] || 0")


def wait_until_handled(page, trigger_id: int, more_than: int) -> None:
    """Until the page has handled another response of the event ``trigger_id``, and rendered twice since."""
    page.wait_for_function(f"() => (window.__handled[{trigger_id}] || 0) > {more_than}", timeout=TIMEOUT_MS)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(HANDLED_RESPONSES)
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
    paint_stroke(page)
    expect(region_on).to_be_checked()  # painting switches regions on
    page.click("#run")
    status = wait_for_result(page)
    assert "in the painted region" in status and "the rest fused from the other styles" in status
    screenshot(page, tmp_path / "region.png")


def paint_stroke(page) -> None:
    page.locator("#region button[aria-label=Brush]").click()
    box = page.locator("#region canvas").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 150, steps=4)
    page.mouse.up()


def upload_under_the_brush(page, demo, path: str) -> None:
    """Upload a content photo and wait until the region editor shows it and the page has handled the editor's input
    event that Gradio 6.31 sends for a new photo: that event is the one that used to tick the region box. Waits
    for the event itself, so a Gradio that stopped sending it fails here instead of passing unchecked."""
    editor_id = next(b._id for b in demo.blocks.values() if getattr(b, "elem_id", None) == "region")
    before = handled(page, editor_id)
    upload_content(page, path)
    expect(page.locator("#region img, #region canvas").first).to_be_visible()
    wait_until_handled(page, editor_id, before)


def test_region_flow_with_the_accordion_open_first(page, served_demo, tmp_path):
    # The order that used to tick "Use the painted region" by itself: the editor is visible when the photo arrives.
    page.get_by_text("Region styles: paint where style 1 goes").click()
    region_on = page.get_by_label("Use the painted region")
    upload_under_the_brush(page, served_demo, app.EXAMPLES["content"][1].path)
    assert not region_on.is_checked(), "showing the photo under the brush ticked the region box"
    region_on.check()
    region_on.uncheck()
    # After unticking, a new photo must not tick it again.
    upload_under_the_brush(page, served_demo, app.EXAMPLES["content"][0].path)
    assert not region_on.is_checked()

    pick_artwork(page, 0, slot=1)
    paint_stroke(page)
    expect(region_on).to_be_checked()  # painting, and only painting, switches regions on
    page.click("#run")
    status = wait_for_result(page)
    assert "in the painted region" in status and "the photo elsewhere" in status
    expect(page.get_by_text("nothing is painted")).to_have_count(0)
    screenshot(page, tmp_path / "region_flow.png")


@pytest.mark.parametrize("slot", ["content", "style1"])
def test_unreadable_upload_is_refused_on_upload(page, tmp_path, slot):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    page.locator(f"#{slot} input[type=file]").set_input_files(str(bad))
    label = "1 · Content photo" if slot == "content" else "Style 1"
    # Before anyone presses Stylize: a warning naming the slot and the file, and the broken image is gone.
    expect(page.get_by_text(f"{label}: 'notes.jpg' is not an image").first).to_be_visible()
    expect(page.locator(f"#{slot} img")).to_have_count(0)
    assert "/tmp" not in page.locator("body").inner_text()


def test_stylize_is_disabled_while_running_and_errors_clear_the_status(page, served_demo, monkeypatch):
    style_app = served_demo.style_app
    stylize = style_app.stylize
    release = threading.Event()

    def held_stylize(*args, **kwargs):
        assert release.wait(TIMEOUT_MS / 1000), "the test never let the job finish"  # runs until the button is checked
        return stylize(*args, **kwargs)

    monkeypatch.setattr(style_app, "stylize", held_stylize)
    upload_content(page, app.EXAMPLES["content"][0].path)
    pick_artwork(page, 0, slot=1)
    run = page.locator("#run")
    run.click()
    try:
        expect(run).to_be_disabled()
    finally:
        release.set()
    assert "512x288" in wait_for_result(page)
    expect(run).to_be_enabled()

    page.get_by_role("button", name="Clear styles").click()
    expect(page.locator("#style1 img")).to_have_count(0)
    run.click()
    expect(page.get_by_text(app.NO_STYLE).first).to_be_visible()
    expect(run).to_be_enabled()  # back after an error too
    expect(page.locator("#status")).not_to_contain_text(" in ")  # the last run's success is not shown beside the error


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
