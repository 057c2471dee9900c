"""scripts/evaluate.py against the Procfile's server: a folder of real pictures in the real-dev layout (labels.csv:
file,label,kind,source) is scored kind by kind, each picture at the endpoint its label calls for, and the
evaluation set's layout (file,category,expected,note) as before. The pictures are drawn here."""

import json

import pytest

from scripts import evaluate
from tests.images import draw_digit, draw_number, encode, mnist_style, write_set
from tests.servers import running


@pytest.fixture(scope="module")
def url():
    with running() as (port, _):
        yield f"http://127.0.0.1:{port}"


def scores(folder, url, tmp_path):
    """evaluate.py's --json scores for `folder`, once it has also written its contact sheet."""
    summary, sheet = tmp_path / "summary.json", tmp_path / "misses.png"
    assert evaluate.main(["--set", str(folder), "--url", url, "--sheet", str(sheet), "--json", str(summary)]) == 0
    assert sheet.exists()
    scores = json.loads(summary.read_text())["scores"]
    for name, category in scores.get("/recognize.json", {}).items():  # single digits: their calibration error too
        single = name.startswith("one-digit") or name == "mnist"
        assert ("ece_15_bins" in category) == single == ("calibration_bins" in category)
        assert 0 <= category.pop("ece_15_bins", 0) <= 1
        assert sum(count for count, _, _ in category.pop("calibration_bins", [])) == (category["images"] if single else 0)
    return scores


def scan(digit, size):
    """A single digit scanned dark on light, `size` px square, as the real-dev single digits are."""
    return draw_digit(digit, (size, size), round(size * 0.7), 2, ink=0, background=255)


def test_a_real_dev_folder_is_scored_kind_by_kind_and_no_digit_is_right_only_when_refused(url, tmp_path, capsys):
    folder = write_set(tmp_path / "real-dev", ["file", "label", "kind", "source"], [
        (scan(3, 28), "3", "one-digit-scan-28px", "drawn 3"),
        (scan(5, 28), "5", "one-digit-scan-28px", "drawn 5"),
        (scan(4, 16), "4", "one-digit-scan-16px", "drawn 4"),
        (draw_number("42", ink=0, background=255)[0], "42", "num-scan-register", "drawn 42"),
        (draw_number("5", ink=0, background=255)[0], "5", "num-scan-register", "one digit of a number kind"),
        (draw_digit("H", (300, 300), 220, 16), "", "non-letter", "drawn H"),
        (draw_digit(7, (200, 200), 150, 14), "", "non-letter", "a 7 that should have been refused"),
    ])
    refusing_one_of_two = {"images": 2, "right": 0.5, "refused": 0.5}
    assert scores(folder, url, tmp_path) == {
        "/recognize.json": {"one-digit-scan-28px": {"images": 2, "right": 1.0, "refused": 0.0},
                            "one-digit-scan-16px": {"images": 1, "right": 1.0, "refused": 0.0},
                            "non-letter": refusing_one_of_two},
        "/read.json": {"num-scan-register": {"images": 2, "right": 1.0, "refused": 0.0},
                       "non-letter": refusing_one_of_two},
    }
    printed = capsys.readouterr().out
    assert "one-digit-scan-28px" in printed.splitlines()[1]  # the kind is the table's category
    for endpoint in ("/recognize.json", "/read.json"):
        assert f"{endpoint} non-letter: 1 missed:\n  6.png: not_a_digit, 7 (" in printed
    assert "— a 7 that should have been refused" in printed  # the source stands in as the note


def test_the_evaluation_sets_layout_still_sends_each_category_where_make_eval_set_says(url, tmp_path):
    folder = write_set(tmp_path / "eval-set", ["file", "category", "expected", "note"], [
        (mnist_style(2), "mnist", "2", "an MNIST-style 2"),
        (draw_digit("H", (300, 300), 220, 16), "not_digit", "not_a_digit", "drawn H"),
        (draw_number("2026", ink=0, background=255)[0], "numbers", "2026", "drawn 2026"),
        (draw_number("3.50", ink=0, background=255)[0], "decimal", "3.50", "drawn 3.50"),
        (draw_number("3.50", ink=0, background=255)[0], "decimal", "3,50", "its digits right, its mark not"),
    ])
    assert scores(folder, url, tmp_path) == {
        "/recognize.json": {"mnist": {"images": 1, "right": 1.0, "refused": 0.0},
                            "not_digit": {"images": 1, "right": 1.0, "refused": 1.0}},
        "/read.json": {"not_digit": {"images": 1, "right": 1.0, "refused": 1.0},
                       "numbers": {"images": 1, "right": 1.0, "refused": 0.0},
                       "decimal": {"images": 2, "right": 0.5, "refused": 0.0}},
    }
