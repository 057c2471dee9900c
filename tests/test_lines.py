"""The line reader's training lines (scripts/lines.py), its input (frame_line), reading its output (each
character's place and box, and when its reading stands instead of the segmenter's), and scripts/train_lines.py
end to end in quick mode."""

import json
import subprocess
import sys

import numpy as np
import pytest

from app.line_reader import ALPHABET, STEP, Character, LineReading, chosen_reader, greedy_reading, spans, text_of
from app.preprocessing import (LINE_HEIGHT, LINE_MARGIN, LINE_WIDTHS, NoDigit, frame_line, line_crop,
                               padded_lines)
from scripts import lines
from scripts import train_lines as line_recipe
from scripts.mnist_data import load_mnist
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def pool():
    mnist = load_mnist()
    return lines.digit_pool(mnist.x_train[:3000], mnist.y_train[:3000])


def test_texts_are_numbers_as_people_write_them_and_sometimes_no_number():
    rng = np.random.default_rng(0)
    texts = [lines.text_of(rng) for _ in range(3000)]
    assert all(set(text) <= set(ALPHABET) and len(text) <= lines.MAX_TEXT for text in texts)
    assert all(text == " ".join(text.split()) for text in texts)  # single spaces, none at either end
    assert all(sum(c.isdigit() for c in text) >= 1 for text in texts if text)  # a mark never stands alone
    empty = sum(not text for text in texts) / len(texts)
    assert 0.05 < empty < 0.15
    for mark in ".,-/: ":
        assert sum(mark in text for text in texts) > 60, mark
    assert "".join(ALPHABET[c - 1] for c in lines.encoded("12/06") if c) == "12/06"


def test_a_line_is_its_text_in_ink_and_the_same_for_the_same_seed(pool):
    for seed in range(20):
        text = lines.text_of(np.random.default_rng(seed))
        ink = lines.line(text, pool, np.random.default_rng(seed))
        again = lines.line(text, pool, np.random.default_rng(seed))
        np.testing.assert_array_equal(ink, again)
        assert ink.dtype == np.float32 and 0 <= ink.min() and ink.max() <= 1 and ink.max() > 0.5
        if sum(c.isdigit() for c in text) >= 4:
            assert ink.shape[1] > 1.5 * ink.shape[0]  # a number is a line, wider than tall


def test_a_longer_number_is_a_wider_line(pool):
    rng = np.random.default_rng(1)
    widths = {length: np.median([frame_line(lines.line("7" * length, pool, rng)).shape[1] for _ in range(20)])
              for length in (2, 4, 8)}
    assert widths[2] < widths[4] < widths[8] <= LINE_WIDTHS[-1]


def test_a_framed_line_is_its_ink_scaled_to_the_readers_height_within_a_margin():
    ink = np.zeros((300, 900), np.float32)
    ink[100:200, 100:700] = 1  # 100 rows of ink, 600 columns
    framed = frame_line(ink)
    assert framed.shape == (LINE_HEIGHT, round(600 * (LINE_HEIGHT - 2 * LINE_MARGIN) / 100) + 2 * LINE_MARGIN)
    assert framed[LINE_MARGIN:-LINE_MARGIN, LINE_MARGIN:-LINE_MARGIN].min() == 255
    assert not framed[:LINE_MARGIN].any() and not framed[:, :LINE_MARGIN].any()
    long = np.zeros((20, 5000), np.float32)
    long[5:15] = 1
    assert frame_line(long).shape == (LINE_HEIGHT, LINE_WIDTHS[-1])  # squeezed, never wider
    with pytest.raises(NoDigit):
        frame_line(np.zeros((30, 30), np.float32))
    batch = padded_lines([framed, frame_line(ink[:, :300])])
    assert batch.shape == (2, LINE_HEIGHT, 256, 1) and batch.dtype == np.float32 and batch.max() == 1


def test_a_greedy_reading_merges_repeats_drops_blanks_and_knows_where_each_character_was_read():
    classes = [0, 2, 2, 0, 2, 0, 0, 11, 6, 6, 0, 16, 16, 1, 0]  # blank 1 1 blank 1 . 5 5 space space 0
    probabilities = np.full((len(classes), len(ALPHABET) + 1), 0.01)
    probabilities[np.arange(len(classes)), classes] = 0.8
    read = greedy_reading(probabilities)
    assert "".join(character.text for character in read) == "11.5 0"
    assert [character.steps for character in read] == [(1, 3), (4, 5), (7, 8), (8, 10), (11, 13), (13, 14)]
    assert all(character.confidence == pytest.approx(0.8) for character in read)
    assert text_of(read) == "11.5 0"  # the 0 further from the 5 than the 1s from each other: a group of its own
    assert text_of(greedy_reading(probabilities[[0, 11, 11, 12, 0]])) == ""  # spaces alone read as nothing


def read_at(written):
    """Characters read at the given steps: [(text, first step), ...], each one step long."""
    return [Character(text, (step, step + 1), 0.9) for text, step in written]


def test_a_space_parts_groups_only_where_digits_stand_further_apart_than_the_lines_usual_spacing():
    groups = read_at([("5", 0), ("5", 4), ("5", 8), (" ", 12), ("0", 16), ("1", 20), ("2", 24)])
    assert text_of(groups) == "555 012"  # the 5 and the 0 eight steps apart, the other digits four
    evenly = read_at([("8", 0), (" ", 3), ("9", 6), (".", 9), ("1", 11), (" ", 14), ("6", 17)])
    assert text_of(evenly) == "89.16"  # every digit as far from the next: the writer's spacing, not groups
    assert text_of(read_at([(" ", 0), ("4", 3), (" ", 6), ("-", 9), (" ", 12), ("2", 15), (" ", 18)])) == "4-2"


def test_lines_too_narrow_for_their_text_are_left_out_of_training():
    texts = np.stack([lines.encoded("1111"), lines.encoded("1")])
    narrow = np.zeros((LINE_HEIGHT, 7 * STEP), np.uint8)  # 7 steps: "1111" needs 8 (blanks between repeats)
    assert line_recipe.readable([narrow, narrow], texts).tolist() == [False, True]


def test_quick_mode_trains_a_line_reader_that_loads_and_reads_a_step_every_four_columns(tmp_path):
    output = tmp_path / "lines.h5"
    result = subprocess.run([sys.executable, "scripts/train_lines.py", "--quick", "--output", str(output)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(output.with_name("lines.json").read_text())
    assert card["quick"] is True and card["alphabet"] == ALPHABET
    assert card["lines"]["train"] > 500 and set(card["read_exactly"]) == {"validation", "test"}
    assert set(card["digit_pool"]) == {str(digit) for digit in range(10)}

    import keras

    model = keras.models.load_model(output, compile=False)
    probabilities = np.asarray(model.predict(np.zeros((2, LINE_HEIGHT, 256, 1), np.float32), verbose=0))
    assert probabilities.shape == (2, 256 // STEP, len(ALPHABET) + 1)
    np.testing.assert_allclose(probabilities.sum(axis=2), 1, atol=1e-5)


def characters(text_and_steps):
    """Characters read at the given steps, each 0.9 sure: [("1", (2, 4)), ...]."""
    return [Character(text, steps, 0.9) for text, steps in text_and_steps]


def reading(text_and_steps, steps=40, confidence=0.9, digit_somewhere=0.0):
    """A LineReading of those characters over `steps` steps, a frame of 4 * steps columns."""
    probabilities = np.zeros((steps, len(ALPHABET) + 1))
    probabilities[:, 0] = 1 - digit_somewhere
    probabilities[:, 1] = digit_somewhere
    read = characters(text_and_steps)
    for character in read:
        character.confidence = confidence
    return LineReading(read, probabilities, np.zeros((32, 4 * steps)), slice(0, 32), slice(0, 4 * steps),
                       4 * steps)


def test_each_character_spans_halfway_to_its_neighbours_and_its_box_is_its_ink():
    read = characters([("3", (1, 3)), (".", (6, 7)), ("5", (10, 12))])
    assert spans(read, 15) == [(0, 18), (18, 34), (34, 60)]
    ink = np.zeros((100, 400), np.float32)
    ink[20:80, 50:90] = 1  # a digit
    ink[72:80, 110:118] = 1  # a dot on the baseline
    ink[20:80, 140:190] = 1  # a digit
    framed, (rows, cols) = frame_line(ink), line_crop(ink)
    scale = (framed.shape[1] - 2 * LINE_MARGIN) / (cols.stop - cols.start)

    def step(column):  # the step of the framed line at an ink-map column
        return int((LINE_MARGIN + (column - cols.start) * scale) // STEP)

    read = characters([("3", (step(70), step(70) + 1)), (".", (step(114), step(114) + 1)),
                       ("5", (step(165), step(165) + 2))])
    line = LineReading(read, np.zeros((framed.shape[1] // STEP, len(ALPHABET) + 1)), ink, rows, cols,
                       framed.shape[1])
    wanted = [(50, 20, 40, 60), (110, 72, 8, 8), (140, 20, 50, 60)]
    for box, expected in zip(line.boxes, wanted, strict=True):  # to within a step's columns
        assert all(isinstance(value, int) for value in box)
        assert np.abs(np.subtract(box, expected)).max() <= STEP / scale, (box, expected)


@pytest.mark.parametrize("segmenter, confidence, refused, line, chosen", [
    ("350", 0.99, True, reading([("3", (1, 2)), ("5", (5, 6)), ("0", (8, 9))]), "refuse"),  # its refusals stand
    ("33", 0.4, True, reading([("3", (1, 4))], confidence=0.9995), "line"),  # but to one digit all but certain
    ("33", 0.4, True, reading([("3", (1, 4))], confidence=0.99), "refuse"),  # a wide 3 or a letter: refused
    ("33", 0.4, True, reading([("3", (1, 2)), ("3", (3, 4))], confidence=0.99999), "refuse"),  # two digits
    ("111", 0.9, False, reading([], digit_somewhere=0.01), "refuse"),  # a dash: sure there is no digit
    ("1", 0.9, False, reading([], digit_somewhere=0.4), "segmenter"),  # not sure: the segmenter's sure reading stands
    ("4", 0.3, False, reading([], digit_somewhere=0.4), "refuse"),  # likely none, the segmenter doubtful: a letter
    ("4", 0.3, False, reading([], digit_somewhere=0.8), "segmenter"),  # a digit likely: the segmenter's stands
    ("350", 0.99, False, reading([("3", (1, 2)), (".", (3, 4)), ("5", (5, 6)), ("0", (8, 9))]), "segmenter"),
    ("17", 0.99, False, reading([("-", (1, 2)), ("7", (4, 5))]), "line"),  # the minus read as a 1 by the segmenter
    ("11250", 0.99, False, reading([("1", (1, 2)), (",", (3, 4)), ("2", (5, 6)), ("5", (7, 8)), ("0", (9, 10))],
                                   confidence=0.99), "line"),  # and a comma's tail
    ("79939", 0.99, False, reading([("7", (1, 2)), (",", (3, 4)), ("9", (5, 6)), ("3", (7, 8)), ("9", (9, 10))]),
     "line"),  # a comma read as a 9
    ("79939", 0.99, False, reading([("7", (1, 2)), ("9", (5, 6)), ("3", (7, 8)), ("9", (9, 10))]),
     "segmenter"),  # no mark: a digit the line reader missed is no mark the segmenter misread
    ("12106", 0.95, False, reading([("1", (1, 2)), ("2", (3, 4)), ("/", (6, 7)), ("0", (8, 9)), ("6", (11, 12))],
                                   confidence=0.995), "line"),  # a date's slash, the line reader sure of it
    ("12106", 0.95, False, reading([("1", (1, 2)), ("2", (3, 4)), ("/", (6, 7)), ("0", (8, 9)), ("6", (11, 12))],
                                   confidence=0.95), "segmenter"),  # less sure: it reads a slanted 1 as a slash too
    ("31456", 0.95, False, reading([("3", (1, 2)), ("/", (3, 4)), ("4", (6, 7)), ("5", (8, 9)), ("6", (11, 12))],
                                   confidence=0.995), "segmenter"),  # no date: a slash there is likelier a 1
    ("1881", 0.05, False, reading([("1", (1, 2)), ("0", (3, 4)), ("0", (6, 7))]), "line"),  # a doubtful segmenter
    ("1881", 0.05, False, reading([("1", (1, 2)), ("0", (3, 4))], confidence=0.6), "line"),  # 36% sure: enough
    ("1881", 0.05, False, reading([("1", (1, 2)), ("0", (3, 4))], confidence=0.5), "segmenter"),  # both doubtful
    ("58", 0.99, False, reading([("5", (1, 2)), ("9", (3, 4))]), "segmenter"),  # a sure segmenter
    (None, 0.0, False, reading([("5", (1, 2)), ("9", (3, 4))]), "line"),  # too many pieces for the segmenter
])
def test_the_line_readers_reading_stands_where_it_is_sure_and_the_segmenter_doubtful_or_reading_marks(
        segmenter, confidence, refused, line, chosen):
    assert chosen_reader(segmenter, confidence, refused, line) == chosen
