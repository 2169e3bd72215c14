"""The draw-a-digit page in a real headless browser (Chromium driven by Selenium).

The server runs in this process on a free port of 127.0.0.1; the browser draws digits on the
canvas with mouse events, waits for the answer and checks what the page shows: the predicted
digit, the ten bars and the two 28x28 pictures (input and saliency). A screenshot is saved in
the test's temporary folder (and to $TINYGRAD_MNIST_SCREENSHOT when that names a .png file).
Skipped when selenium, chromium or chromedriver is missing (on Debian: apt-get install
chromium chromium-driver; pip install selenium).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from sample_model import trained_seed_cnn

from tinygrad_mnist import serve

pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium and chromedriver"
)
# This machine may have no internet: without these, chromium waits on refused connections.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1240,760",
    "--force-device-scale-factor=1",
)
WAIT = 30  # seconds: the longest the page may take to answer

# Strokes on the 280x280 pad, in its pixels: what a person draws for each digit.
SEVEN = [[(78, 62), (206, 62), (130, 232)]]
ONE = [[(142, 48), (142, 236)]]


@pytest.fixture(scope="module")
def server():
    digit_server = serve.make_server(
        trained_seed_cnn(),
        "127.0.0.1",
        0,
        normalize=True,
        info={"model": "seed-cnn", "test_accuracy": 0.93, "data": "the bundled sample"},
    )
    thread = threading.Thread(target=digit_server.serve_forever, daemon=True)
    thread.start()
    yield digit_server
    digit_server.shutdown()
    digit_server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture
def page(server, browser):
    browser.get(server.url)
    WebDriverWait(browser, WAIT).until(lambda d: "seed-cnn" in d.find_element(By.ID, "model").text)
    return browser


def draw(driver, strokes) -> None:
    """Draw `strokes` (lists of pad pixels) with the mouse: press, move, release."""
    pad = driver.find_element(By.ID, "pad")
    width, height = pad.size["width"], pad.size["height"]
    for stroke in strokes:
        actions = ActionChains(driver, duration=15)
        (x, y), rest = stroke[0], stroke[1:]
        actions.move_to_element_with_offset(pad, round(x - width / 2), round(y - height / 2))
        actions.click_and_hold()
        for next_x, next_y in rest:
            # several small moves per segment, as a hand makes
            for step in range(1, 6):
                to_x = round(x + (next_x - x) * step / 5)
                to_y = round(y + (next_y - y) * step / 5)
                previous = (
                    round(x + (next_x - x) * (step - 1) / 5),
                    round(y + (next_y - y) * (step - 1) / 5),
                )
                actions.move_by_offset(to_x - previous[0], to_y - previous[1])
            x, y = next_x, next_y
        actions.release()
        actions.perform()


def wait_for_answer(driver, answers: int) -> None:
    """Until the page has shown `answers` answers and has no request under way."""
    try:
        WebDriverWait(driver, WAIT).until(
            lambda d: (
                int(d.find_element(By.TAG_NAME, "body").get_attribute("data-answers")) >= answers
                and d.find_element(By.TAG_NAME, "body").get_attribute("data-busy") == "false"
            )
        )
    except TimeoutException:
        status = driver.find_element(By.ID, "status").text
        pytest.fail(f"no answer within {WAIT} s; the page says {status!r}")


def inked_pixels(driver, canvas_id: str, background: int) -> int:
    """How many of a 28x28 canvas' pixels differ from the grey level `background`."""
    return driver.execute_script(
        """
        const c = document.getElementById(arguments[0]);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0 && Math.max(Math.abs(d[i] - arguments[1]),
              Math.abs(d[i + 1] - arguments[1]), Math.abs(d[i + 2] - arguments[1])) > 24) n++;
        }
        return n;
        """,
        canvas_id,
        background,
    )


def bar_widths(driver) -> dict[int, float]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#bars .row")
    return {
        int(row.get_attribute("data-digit")): float(
            row.find_element(By.CLASS_NAME, "bar").value_of_css_property("width").rstrip("px")
        )
        / float(
            row.find_element(By.CLASS_NAME, "track").value_of_css_property("width").rstrip("px")
        )
        for row in rows
    }


def test_drawing_a_seven_shows_the_answer_bars_and_saliency(page, tmp_path: Path) -> None:
    draw(page, SEVEN)
    wait_for_answer(page, 1)
    assert page.find_element(By.ID, "digit").text == "7"
    assert "error" not in page.find_element(By.ID, "status").get_attribute("class")
    assert page.find_element(By.CSS_SELECTOR, "#bars .row.top").get_attribute("data-digit") == "7"

    widths = bar_widths(page)
    assert sorted(widths) == list(range(10))
    assert widths[7] > 0.5 and abs(sum(widths.values()) - 1) < 0.03
    confidence = page.find_element(By.ID, "confidence").text
    assert confidence.endswith("% sure") and float(confidence.split("%")[0].lstrip("> ")) > 50

    assert inked_pixels(page, "seen", background=0) > 40  # white ink on black, ~60 pixels
    assert inked_pixels(page, "saliency", background=255) > 40  # red and blue on white

    screenshot = tmp_path / "draw-a-digit.png"
    page.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    target = os.environ.get("TINYGRAD_MNIST_SCREENSHOT")
    if target and target.endswith(".png"):
        shutil.copyfile(screenshot, target)


def test_clear_then_draw_a_one(page) -> None:
    draw(page, SEVEN)
    wait_for_answer(page, 1)
    page.find_element(By.ID, "clear").click()
    assert page.find_element(By.ID, "digit").text == ""
    assert inked_pixels(page, "seen", background=0) == 0
    assert max(bar_widths(page).values()) == 0
    answers = int(page.find_element(By.TAG_NAME, "body").get_attribute("data-answers"))
    draw(page, ONE)
    wait_for_answer(page, answers + 1)
    assert page.find_element(By.ID, "digit").text == "1"


def test_a_click_without_a_stroke_gets_an_answer_not_an_error(page) -> None:
    draw(page, [[(140, 140)]])  # a dot: prepare_image blows it up to 20x20; the page copes
    wait_for_answer(page, 1)
    assert page.find_element(By.ID, "digit").text.isdigit()
