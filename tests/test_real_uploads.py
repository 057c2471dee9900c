"""A sample of every category of the evaluation set (scripts/make_eval_set.py), read through the API."""

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from scripts import glyphs, make_eval_set
from scripts.mnist_data import VALIDATION_SIZE, load_mnist

SAMPLE = 20


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def read(client, pictures):
    data = {"image": [(io.BytesIO(picture), f"upload{i}") for i, picture in enumerate(pictures)]}
    response = client.post("/recognize.json", data=data, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [answer.get("digit") for answer in response.get_json()["predictions"]]


@pytest.mark.parametrize("category", make_eval_set.RENDERERS)
def test_a_sample_of_each_category_is_read_right(client, mnist, category):
    rng = np.random.default_rng(2024)
    chosen = rng.choice(len(mnist.x_test), SAMPLE, replace=False)
    render = make_eval_set.RENDERERS[category]
    read_as = read(client, [render(mnist.x_test[index], rng, position)[0] for position, index in enumerate(chosen)])
    right = sum(int(a == b) for a, b in zip(read_as, mnist.y_test[chosen]))
    assert right >= SAMPLE - 1, list(zip(read_as, mnist.y_test[chosen].tolist()))


def test_the_scan_sample_covers_every_format(mnist):
    rng = np.random.default_rng(0)
    notes = [make_eval_set.scan(mnist.x_test[0], rng, position)[2] for position in range(SAMPLE)]
    assert {note.split(",")[0] for note in notes} == set(make_eval_set.SCAN_FORMATS)


def test_a_sample_of_the_uci_digits_is_read_right(client):
    uci = list(make_eval_set.uci_digits())[::90]
    read_as = read(client, [data for data, _, _, _ in uci])
    right = sum(int(a == label) for a, (_, _, label, _) in zip(read_as, uci))
    assert right >= len(uci) - 1, list(zip(read_as, [label for _, _, label, _ in uci]))


@pytest.mark.parametrize("kind", make_eval_set.MARKED)
def test_numbers_with_marks_expect_their_text_and_each_kind_its_own_mark(mnist, kind):
    rng = np.random.default_rng(3)
    written = list(make_eval_set.marked(mnist.x_test, mnist.y_test, 12, rng, kind))
    marks = {"decimal": ".,", "thousands": ",", "date": "/", "time": ":", "minus": "-", "groups": " "}[kind]
    for name, data, text, note in written:
        assert text.strip("0123456789") and set(text) <= set("0123456789" + marks), text
        assert note.startswith(f"{text!r} in test digits") and Image.open(io.BytesIO(data)).verify() is None
    assert {note.split(": ")[1].split(",")[0] for _, _, _, note in written} == {"canvas", "photo", "scan"}


def test_wide_digits_expect_their_digit_and_dashes_a_refusal(client, mnist):
    rng = np.random.default_rng(4)
    wide = list(make_eval_set.wide_digits(mnist.x_test, mnist.y_test, 6, rng))
    assert all(digit in "0123456789" and len(digit) == 1 for _, _, digit, _ in wide)
    dashes = list(make_eval_set.lone_dashes(6, rng))
    assert {expected for _, _, expected, _ in dashes} == {"not_a_digit"}
    data = {"image": [(io.BytesIO(picture), f"dash{i}") for i, (_, picture, _, _) in enumerate(dashes)]}
    answers = client.post("/read.json", data=data, content_type="multipart/form-data").get_json()["predictions"]
    assert sum(answer.get("error", {}).get("code") == "not_a_digit" for answer in answers) >= 5, answers


def test_each_phone_scene_is_the_same_number_on_the_same_sheet_and_the_desk_never_covers_the_writing(mnist):
    scenes = list(make_eval_set.phone_scenes(mnist.x_test, mnist.y_test, 1, np.random.default_rng(5)))
    assert [category for category, *_ in scenes] == [f"scene_{scene}" for scene in make_eval_set.SCENES]
    assert len({(name, number) for _, name, _, number, _ in scenes}) == 1
    pictures = {category: Image.open(io.BytesIO(data)) for category, _, data, _, _ in scenes}
    assert {picture.format for picture in pictures.values()} == {"JPEG"}
    assert all(2000 <= max(picture.size) <= 3200 for picture in pictures.values())
    plain = np.asarray(pictures["scene_plain"].convert("L"), dtype=np.float32)
    desk = np.asarray(pictures["scene_desk"].convert("L"), dtype=np.float32)
    writing = plain < 0.6 * np.median(plain)  # the pen's strokes on the sheet
    assert writing.any() and np.median(np.abs(desk[writing] - plain[writing])) < 20
    assert np.mean(np.abs(desk - plain) > 40) > 0.03  # and the desk is there, along a side
    assert set(make_eval_set.ENDPOINTS["/read.json"]) >= {category for category, *_ in scenes}


def test_the_tuning_set_is_numbers_of_validation_digits_and_non_digits_in_training_fonts(mnist, tmp_path):
    """The reader's constants are chosen on it, so that the evaluation set's test digits and its fonts are only
    scored."""
    assert make_eval_set.main(["--tuning", "--per-category", "4", "--output", str(tmp_path)]) == 0
    with open(tmp_path / "labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert ({row["category"] for row in rows} == {"not_digit", "num_photo", "numbers", "touching", "wide", "dashes"}
            | set(make_eval_set.MARKED))
    rows = [row for row in rows if row["category"] in ("not_digit", "num_photo", "numbers", "touching")]
    assert len(rows) == 16
    fonts = [re.search(r"^the character . in (\S+):", row["note"]) for row in rows[12:]]
    assert all(row["expected"] == "not_a_digit" and (tmp_path / row["file"]).stat().st_size > 0 for row in rows[12:])
    assert any(fonts) and all(font.group(1) in {path.stem for path in glyphs.font_files(evaluation=False)}
                              for font in fonts if font), [row["note"] for row in rows[12:]]
    validation = mnist.y_train[-VALIDATION_SIZE:]
    for row in rows[:12]:
        chosen = json.loads(re.search(r"^validation digits (\[[\d, ]+\])", row["note"]).group(1))
        assert row["expected"] == "".join(str(validation[index]) for index in chosen)
        assert (tmp_path / row["file"]).stat().st_size > 0
