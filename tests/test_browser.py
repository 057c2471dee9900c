"""The page in a real browser: headless Debian Chromium driven by Playwright, against the app on loopback.

Needs `apt-get install -y chromium` (the README's test command and .ci/run install it).
"""

import base64
import re
import shutil
import threading

import pytest
from PIL import Image
from werkzeug.serving import make_server

from app import create_app
from tests.images import (MARK_WIDTHS, MARKS, SHAPES, STROKES, draw_digit, draw_number, encode, marker_on_paper, on_desk,
                          paper_photo, pen_on_sheet)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
ANSWER = re.compile(r"^([0-9.,:/ -]+) \u2014 ([0-9.]+)% sure$")


@pytest.fixture(scope="module")
def url():
    server = make_server("127.0.0.1", 0, create_app({"TESTING": True}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    """A fresh page on the service that records every console error and uncaught exception."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.goto(url)
    yield page
    context.close()


def draw(page, text):
    """Write `text` (digits and marks, or a SHAPES name) on the canvas with the mouse, stroke by stroke, left to
    right, as a person would."""
    box = page.locator("#pad").bounding_box()
    height = box["height"] * 0.6
    if text in SHAPES:
        shapes = [(SHAPES[text], 0.6)]
    else:
        shapes = [(STROKES[int(character)], 0.6) if character.isdigit() else (MARKS[character], MARK_WIDTHS[character])
                  for character in text]
    gap = height * 0.3
    left = box["x"] + (box["width"] - sum(width * height + gap for _, width in shapes)) / 2
    for lines, width in shapes:
        top = box["y"] + box["height"] * 0.15
        for line in lines:
            points = [(left + x * height * width, top + y * height) for x, y in line]
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point, steps=8)
            page.mouse.up()
        left += width * height + gap


def answer(page, expected=None):
    """The text and the confidence (a percentage) the status region reads out, once an answer (the `expected`
    text, if given) has arrived."""
    status = page.get_by_role("status")
    page.wait_for_function("expected => document.getElementById('status').textContent.endsWith('sure')"
                           " && (!expected || document.getElementById('status').textContent.startsWith(expected + ' '))",
                           arg=expected)
    found = ANSWER.match(status.inner_text().strip())
    assert found, status.inner_text()
    return found[1], float(found[2])


def posts_to_read(request):
    return request.method == "POST" and request.url.split("?")[0].endswith("/read.json")


def test_draw_recognize_clear_and_upload(page, tmp_path, artefacts):
    draw(page, "7")
    assert answer(page)[0] == "7"  # read by itself once the stroke ended
    page.evaluate("document.getElementById('status').textContent = ''")
    with page.expect_response(lambda response: posts_to_read(response.request)) as sent:
        page.get_by_role("button", name="Recognize").click()
    assert sent.value.json()["number"] == "7"  # the button sent the drawing itself
    digit, percent = answer(page)
    assert digit == "7" and percent >= 50
    winner = page.locator("#chart li.winner .label")
    assert winner.inner_text() == "7"
    seen = page.locator("#model-input")
    assert seen.is_visible()
    assert seen.evaluate("image => [image.naturalWidth, image.naturalHeight]") == [28, 28]
    page.screenshot(path=artefacts / "page-drawn-7.png", full_page=True)

    page.get_by_role("button", name="Clear").click()
    assert page.get_by_role("status").inner_text().startswith("Cleared")
    assert not seen.is_visible()
    page.get_by_role("button", name="Recognize").click()
    assert page.get_by_role("status").inner_text() == "Draw a digit or a number first: the canvas is blank."

    photo = tmp_path / "photo-of-a-5.jpg"
    photo.write_bytes(encode(paper_photo(5, size=(1200, 900)), "JPEG", quality=85))
    page.get_by_label("Choose a photo, scan or image of a number").set_input_files(photo)
    assert answer(page)[0] == "5"
    page.screenshot(path=artefacts / "page-uploaded-5.png", full_page=True)
    assert page.problems == []


def test_an_unreadable_file_says_so_plainly(page, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    page.get_by_label("Choose a photo, scan or image of a number").set_input_files(broken)
    status = page.get_by_role("status")
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    assert status.inner_text() == ("That file could not be read as an image. "
                                   "Try a PNG, JPEG, GIF, BMP, TIFF, WebP, HEIC or AVIF.")
    # The 400 shows in the console as a failed resource: the page itself raised nothing.
    assert [problem for problem in page.problems if "400" not in problem] == []


def test_a_number_drawn_is_read_with_each_digit_boxed_and_its_own_probabilities(page, artefacts):
    draw(page, "42")
    assert answer(page, "42")[0] == "42"
    digits = page.locator("#digits button")
    assert digits.all_inner_texts() == ["4", "2"]
    assert page.locator("#view").is_visible()
    assert page.locator("#chart li.winner .label").inner_text() == "4"
    digits.nth(1).click()
    assert page.locator("#chart li.winner .label").inner_text() == "2"
    assert page.locator("#chart-label").inner_text().endswith("digit 2 of 2")
    assert digits.nth(1).get_attribute("aria-pressed") == "true"
    page.screenshot(path=artefacts / "page-drawn-42.png", full_page=True)
    assert page.problems == []


def test_a_letter_drawn_is_refused_in_a_plain_sentence_with_the_picture_and_the_closest_reading(page, artefacts):
    draw(page, "H")
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    said = page.get_by_role("status").inner_text()
    assert said.startswith("That looks like a letter, a mark or a drawing, not a number. The closest reading is ")
    assert re.search(r"\(\d+(\.\d)?% sure\)\.$", said)
    assert page.locator("#view").is_visible()  # the picture, with the closest reading boxed
    page.screenshot(path=artefacts / "page-refused-H.png", full_page=True)
    assert [problem for problem in page.problems if "422" not in problem] == []


def test_a_drawings_refusal_waits_until_the_pen_has_rested(page):
    """Ink that is no number yet may be the start of one: its refusal is shown once the pen has rested, not
    while the writer may go on. The page's clock is Playwright's, so the wait is measured, not slept."""
    page.clock.install(time=0)
    page.reload()
    page.clock.pause_at(60_000)  # from here the page's time moves only when run_for moves it
    with page.expect_response(lambda response: posts_to_read(response.request)) as sent:
        draw(page, "scribble")  # one stroke: one request
    assert sent.value.status == 422
    page.clock.run_for(300)
    assert not page.evaluate("document.getElementById('status').classList.contains('error')")
    page.clock.run_for(1000)
    assert page.evaluate("document.getElementById('status').classList.contains('error')")


def test_a_number_with_a_decimal_point_is_read_with_its_mark(page):
    draw(page, "3.50")
    assert answer(page, "3.50")[0] == "3.50"
    assert page.locator("#digits button").all_inner_texts() == ["3", "5", "0"]
    assert page.problems == []


def test_a_photo_of_a_number_is_read(page, tmp_path):
    ink, _ = draw_number("305", height=400, stroke=36, margin=200)
    photo = tmp_path / "photo-of-305.jpg"
    photo.write_bytes(encode(marker_on_paper(ink), "JPEG", quality=85))
    page.get_by_label("Choose a photo, scan or image of a number").set_input_files(photo)
    assert answer(page, "305")[0] == "305"
    assert page.locator("#digits button").count() == 3
    assert page.problems == []


def test_the_controls_work_from_the_keyboard_with_a_visible_focus(page):
    draw(page, "1")
    answer(page)
    page.get_by_role("button", name="Clear").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    page.keyboard.press("Enter")
    assert page.get_by_role("status").inner_text().startswith("Cleared")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "recognize"
    page.keyboard.press("Enter")
    assert page.get_by_role("status").inner_text() == "Draw a digit or a number first: the canvas is blank."
    assert outline == "solid"
    assert page.problems == []


def test_the_page_fits_a_phone_draws_with_touch_and_brings_the_answer_into_view(browser, url, artefacts):
    context = browser.new_context(viewport={"width": 375, "height": 667}, has_touch=True, is_mobile=True)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = page.locator("#pad").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    touch = context.new_cdp_session(page)  # real touch input, as a finger on a phone sends it
    x = box["x"] + box["width"] / 2
    points = [{"x": x, "y": box["y"] + box["height"] * (0.2 + 0.06 * step)} for step in range(11)]
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
    for point in points[1:]:
        touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert answer(page)[0] == "1"
    page.wait_for_function("() => { const box = document.getElementById('status').getBoundingClientRect();"
                           " return box.top >= 0 && box.bottom <= window.innerHeight + 1 }")  # to the pixel
    assert page.locator("#pad").bounding_box()["y"] + 50 > 0  # and the canvas still in view, to write on
    page.screenshot(path=artefacts / "page-phone.png")
    context.close()
    assert problems == []


def test_an_image_dropped_on_the_page_is_read(page):
    picture = base64.b64encode(encode(draw_digit(2, (240, 240), 180, 16, ink=20, background=250))).decode()
    dropped = page.evaluate_handle("""(picture) => {
        const bytes = Uint8Array.from(atob(picture), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "two.png", { type: "image/png" }));
        return files;
    }""", picture)
    page.dispatch_event("#drop", "dragover", {"dataTransfer": dropped})
    assert "dragging" in page.locator("#drop").get_attribute("class")
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    assert answer(page)[0] == "2"
    assert "dragging" not in page.locator("#drop").get_attribute("class")
    assert page.problems == []


def test_a_phone_photo_of_a_sheet_on_a_desk_dropped_on_the_page_is_read_and_boxed_on_the_upright_picture(
        page, artefacts):
    """A photo as phones store it, sideways with an EXIF orientation, a strip of desk along the sheet's left: the
    number is read, and the page draws the picture upright with each digit's box over that digit."""
    photo = on_desk(pen_on_sheet("385"), "left", 0.15)
    _, boxes = draw_number("385", height=500, stroke=40, margin=600)  # where pen_on_sheet wrote each digit
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = encode(photo.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=85, exif=exif.tobytes())
    dropped = page.evaluate_handle("""(picture) => {
        const bytes = Uint8Array.from(atob(picture), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "IMG_0385.jpg", { type: "image/jpeg" }));
        return files;
    }""", base64.b64encode(stored).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    assert answer(page, "385")[0] == "385"
    size = page.evaluate("() => [document.getElementById('view').width, document.getElementById('view').height]")
    scale = min(size[0] / photo.width, size[1] / photo.height)
    left, top = (size[0] - photo.width * scale) / 2, (size[1] - photo.height * scale) / 2
    at = lambda x, y: [round(left + x * scale), round(top + y * scale)]  # noqa: E731 (upright photo to canvas)
    across = [[at(x + dx, y + h / 2) for dx in range(-int(0.3 * h), int(w + 0.3 * h), 2)] for x, y, w, h in boxes]
    colours = page.evaluate("""(rows) => rows.map((row) => row.map(([x, y]) =>
        Array.from(document.getElementById('view').getContext('2d').getImageData(x, y, 1, 1).data)))""",
                            across + [[at(0.05 * photo.width, photo.height / 2), at(0.9 * photo.width, photo.height / 2)]])
    page.screenshot(path=artefacts / "page-desk-photo-385.png", full_page=True)
    boxed = [sum(1 for red, green, blue, _ in row if (red, green, blue) in ((10, 88, 202), (245, 159, 0)))
             for row in colours[:-1]]
    assert all(count >= 2 for count in boxed), boxed  # each digit's box, its left and right sides, across its middle
    desk, paper = colours[-1]
    assert desk[0] < 140 and desk[0] > desk[2] + 20, desk  # the brown desk on the left: the picture drawn upright
    assert min(paper[:3]) > 170, paper
    assert page.problems == []
