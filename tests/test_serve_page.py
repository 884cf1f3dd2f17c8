"""The web page at / in real headless Chromium (Debian's, driven by playwright; .ci/setup_browser.sh installs it):
upload a video, ask, read the answer, see the frames and the plot of visual tokens per frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_serve_support import EXAMPLES, running_server

CHROMIUM = Path("/usr/bin/chromium")
OPTIONS = ["right", "up", "left", "down"]


@pytest.fixture(scope="module")
def server(saved_tiny, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with running_server(saved_tiny, "--examples", str(EXAMPLES), log=log) as base:
        yield base


@pytest.fixture(scope="module")
def page(server):
    playwright = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: run .ci/setup_browser.sh"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('model').textContent.startsWith('model:')")
        yield page
        browser.close()


def answer_of(page) -> str:
    page.wait_for_function("""() => { const a = document.getElementById('answer').textContent;
        return (a && a !== '…') || document.getElementById('error').textContent; }""", timeout=60000)
    assert page.inner_text("#error") == ""
    return page.inner_text("#answer")


def test_upload_ask_and_see_the_plot(page):
    page.set_input_files("input[type=file]", str(EXAMPLES / "object_direction.mp4"))
    page.fill("#question", "Which way does the white square move?")
    page.fill("#options", ", ".join(OPTIONS))
    page.click("#ask")
    assert answer_of(page) in OPTIONS
    assert page.locator("#allocation rect.bar").count() == 8  # the tiny model samples 8 frames
    bars = page.locator("#allocation rect.bar")
    heights = [float(h) for h in bars.evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    assert min(heights) > 0
    assert page.locator("#frames img").count() == 8
    assert page.locator("#frames img").first.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert "prefill" in page.inner_text("#timings")
    assert page.locator("#options-scores tr").count() == len(OPTIONS)
    shares = [float(t.rstrip(" %")) for t in page.locator("#options-scores td.num").all_inner_texts()]
    assert sum(shares) == pytest.approx(100, abs=0.5)  # each option's probability, over the options


def test_example_with_a_budget_and_an_error(page):
    page.set_input_files("input[type=file]", [])
    page.select_option("#example", "counting.mp4")
    assert page.input_value("#question").startswith("How many")
    page.fill("#budget", "12")
    page.click("#ask")
    answer = answer_of(page)
    assert answer in page.input_value("#options").split(", ")
    tokens = page.locator("#allocation rect.bar title").evaluate_all("ts => ts.map(t => t.textContent)")
    assert sum(int(t.split(": ")[1].split()[0]) for t in tokens) <= 12
    assert "of a budget of 12" in page.inner_text("#meta")
    page.fill("#options", "one, one")
    page.click("#ask")
    page.wait_for_function("document.getElementById('error').textContent !== ''")
    assert "cannot be told apart" in page.inner_text("#error")
