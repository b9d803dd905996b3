"""The Space in a real browser (Debian's chromium driven by Playwright): upload, pick, paint, stylize, examples, errors,
and the layout at desktop (1400 px) and phone (390 px) widths, measured in the page.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``: the system chromium
is used). A tiny random model serves the requests, except in the layout tests, which run the real default model
(hybridstyle-base) and write their screenshots to ``docs/`` with ``HYBRIDSTYLE_UPDATE_SCREENSHOTS=1``; other
screenshots are saved under each test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
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

from conftest import free_port  # noqa: E402

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
    port = free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.test_url = url
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
    expect(page.locator("#region img, #region canvas").first).to_be_visible()
    expect(page.get_by_label("Use the painted region")).to_be_checked()  # on from the start: painting is enough
    paint_stroke(page)
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


def test_stylize_right_after_painting_uses_the_painting(page, tmp_path):
    # Stylize clicked at once after a stroke used to style the whole image: the region was switched on by a checkbox
    # that the editor's input event ticked 2.5-3 s later. The painting as it is at submit time now decides.
    page.set_viewport_size({"width": 1400, "height": 2600})  # the brush and Stylize both on screen, as on a tall display
    upload_content(page, app.EXAMPLES["content"][0].path)
    pick_artwork(page, 0, slot=1)
    page.get_by_text("Region styles: paint where style 1 goes").click()
    expect(page.locator("#region canvas").first).to_be_visible()
    run = page.locator("#run").bounding_box()
    # The page's own clock: when the stroke ended and when Stylize was clicked (mouse events sent back to back, with
    # no waiting for the page, as a quick visitor does).
    page.evaluate("""() => {
        window.strokeEnd = window.stylizeClick = null;
        document.addEventListener("pointerup", (e) => {
            if (e.target.tagName === "CANVAS") window.strokeEnd = e.timeStamp;
        }, true);
        document.querySelector("#run").addEventListener("click", (e) => { window.stylizeClick = e.timeStamp; }, true);
    }""")
    paint_stroke(page)
    page.mouse.click(run["x"] + run["width"] / 2, run["y"] + run["height"] / 2)
    status = wait_for_result(page)
    gap = page.evaluate("() => window.stylizeClick - window.strokeEnd")
    # Under 2.5 s, when the old checkbox had not been ticked yet (the page itself may be slow to take the click).
    assert 0 < gap < 2500, f"Stylize was clicked {gap:.0f} ms after the stroke"
    assert "in the painted region" in status and "the photo elsewhere" in status
    # By value: the result is the photo outside the stroke and differs from it inside (one style: pixel overlay).
    photo, result = (page.locator("#result img").nth(i).get_attribute("src") for i in range(2))
    assert photo != result


def test_unticking_stylizes_the_whole_photo_and_says_the_painting_is_unused(page):
    upload_content(page, app.EXAMPLES["content"][0].path)
    pick_artwork(page, 0, slot=1)
    page.get_by_text("Region styles: paint where style 1 goes").click()
    expect(page.locator("#region canvas").first).to_be_visible()
    paint_stroke(page)
    page.get_by_label("Use the painted region").uncheck()
    page.click("#run")
    status = wait_for_result(page)
    assert f"{app.EXAMPLES['styles'][0].title} 100%" in status and "the painted region is not used" in status
    page.get_by_label("Use the painted region").check()  # the painting was kept: ticking again uses it
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("in the painted region")


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


@pytest.mark.parametrize("slot", ["content", "style2"])
def test_a_file_that_is_not_an_image_gets_one_clear_message(page, tmp_path, slot):
    # Gradio's page refuses it before the server sees it, with "Invalid file type: notes.txt. Only image/* allowed.";
    # the app rewords that like its own check: which slot, which file, what to use.
    page.wait_for_selector("html[data-hybridstyle=ready]", state="attached")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a picture")
    page.locator(f"#{slot} input[type=file]").set_input_files(str(notes))
    label = "1 · Content photo" if slot == "content" else "Style 2"
    expect(page.locator("[data-testid=toast-text]")).to_have_text(
        f"{label}: 'notes.txt' is not an image; use a PNG, JPEG, WebP, BMP or TIFF file.")
    expect(page.get_by_text("Invalid file type")).to_have_count(0)
    expect(page.locator(f"#{slot} img")).to_have_count(0)


def test_a_failed_stylize_marks_no_box_with_an_error_badge(page, tmp_path):
    # After a refused upload, Stylize says what is missing in one toast; the result, status and download boxes, which
    # the visitor did not touch, get no red "Error" badge (Gradio puts one on every output of a failed event).
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    page.locator("#content input[type=file]").set_input_files(str(bad))
    expect(page.get_by_text("'notes.jpg' is not an image").first).to_be_visible()
    page.click("#run")
    expect(page.get_by_text(app.NO_CONTENT).first).to_be_visible()
    expect(page.locator("#run")).to_be_enabled()
    for box in ("result", "status", "download"):
        badge = page.locator(f"#{box} [data-testid=status-tracker] .error")
        expect(badge).to_have_count(1)  # Gradio did mark the box...
        expect(badge).to_be_hidden()  # ...and the app hides the mark
    expect(page.locator("#result [data-testid=block-label]")).to_be_visible()  # the badge used to hide it
    screenshot(page, tmp_path / "refused.png")


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


# ---- layout, measured in the page at desktop and phone widths; screenshots for people to look at ------------------

UPDATE_SCREENSHOTS = os.environ.get("HYBRIDSTYLE_UPDATE_SCREENSHOTS") == "1"  # then docs/ gets the new PNGs
DOCS = ROOT / "docs"

# Every box that must not cover another, stick out of its block or be cut, as {what: problem} for the failures.
LAYOUT_PROBLEMS = """() => {
  const box = (e) => e.getBoundingClientRect();
  const overlap = (a, b) => Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left))
                         * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  const inside = (a, b) => a.left >= b.left - 0.5 && a.right <= b.right + 0.5 && a.top >= b.top - 0.5
                        && a.bottom <= b.bottom + 0.5;
  const problems = {};
  for (let n = 1; n <= 4; n++) {
    const slot = document.querySelector(`#style${n}`);
    const img = slot.querySelector("img");
    const covers = [slot.querySelector('[data-testid="block-label"]'), ...slot.querySelectorAll(".top-panel button")];
    if (img) for (const e of covers) {
      if (e && e.offsetParent && overlap(box(e), box(img)) > 0) problems[`style${n}`] = `${e.textContent.trim() ||
        e.getAttribute("aria-label")} covers the thumbnail`;
    }
    const weight = document.querySelector(`#weight${n}`);
    const range = weight.querySelector('input[type="range"]');
    if (!inside(box(range), box(weight)) || weight.scrollWidth > weight.clientWidth)
      problems[`weight${n}`] = `slider ${JSON.stringify(box(range))} sticks out of ${JSON.stringify(box(weight))}`;
  }
  const gallery = document.querySelector("#gallery");
  const items = [...gallery.querySelectorAll("button.thumbnail-item")];
  const captions = items.map((item) => item.querySelector(".caption-label"));
  items.forEach((item, i) => {
    const caption = captions[i], title = item.querySelector("img").alt;
    if (!inside(box(item), box(gallery))) problems[`artwork ${i}`] = `${title} is cut by the gallery's box`;
    if (caption.innerText.trim() !== title || caption.scrollWidth > caption.clientWidth + 1
        || caption.scrollHeight > caption.clientHeight + 1 || !inside(box(caption), box(item)))
      problems[`caption ${i}`] = `${title} is cut`;
    const label = gallery.querySelector('[data-testid="block-label"]');
    if (overlap(box(label), box(item)) > 0) problems[`gallery label ${i}`] = `the gallery label covers ${title}`;
  });
  const wrap = gallery.querySelector(".grid-wrap");
  if (wrap.scrollHeight > wrap.clientHeight + 1) problems.gallery = "the gallery scrolls inside a box";
  const shown = captions.map((c) => c.innerText.trim());
  if (new Set(shown).size !== shown.length) problems.captions = `captions look alike: ${shown}`;
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.page = `the page is ${document.documentElement.scrollWidth} px wide in a ${window.innerWidth} px window`;
  return problems;
}"""


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """The app on the real default model (hybridstyle-base, bundled): the screenshots show what visitors get."""
    model = app.load_model()
    assert type(model).__name__ == "HybridStyle" and model.config.encoder_weights == "vgg19-caffe-imagenet"
    demo = app.build_demo(model, tmp_path_factory.mktemp("served-default"))
    port = free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


def open_filled(browser, url: str, width: int, height: int):
    """A page with a photo, two artworks in the slots and a finished result: every part of the layout in use."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#run")
    upload_content(page, app.EXAMPLES["content"][1].path)
    pick_artwork(page, 2, slot=1)
    pick_artwork(page, 0, slot=2)
    page.locator("#weight1 input[type=number]").fill("0.6")
    page.locator("#weight2 input[type=number]").fill("0.4")
    page.locator("#weight2 input[type=number]").press("Enter")
    page.click("#run")
    assert "Munch, The Scream 60%" in wait_for_result(page)
    page.mouse.move(0, 0)  # no hover effect in the picture
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)  # images decoded, toasts gone
    return page


def test_desktop_layout_and_screenshot(browser, default_server, tmp_path):
    page = open_filled(browser, default_server, 1400, 1200)
    try:
        assert page.evaluate(LAYOUT_PROBLEMS) == {}
        path = DOCS / "app_screenshot.png" if UPDATE_SCREENSHOTS else tmp_path / "app_screenshot.png"
        page.screenshot(path=str(path))  # the first screen, as a visitor sees it
        print(f"screenshot: {path}")
    finally:
        page.close()


def test_phone_layout_and_screenshot(browser, default_server, tmp_path):
    page = open_filled(browser, default_server, 390, 844)
    try:
        assert page.evaluate(LAYOUT_PROBLEMS) == {}
        path = DOCS / "app_screenshot_phone.png" if UPDATE_SCREENSHOTS else tmp_path / "app_screenshot_phone.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
    finally:
        page.close()
