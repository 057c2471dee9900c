"""The segmenter behind /read.json: properties over arbitrary ink (hypothesis), and through the API."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from app.predictor import NOT_A_DIGIT, SEVERAL_DIGITS
from app.segmentation import Segmentation, TooManyDigits, best_reading, crowded_groups, is_no_number, segment
from tests.images import draw_digit, draw_number, encode

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
MAX_DIGITS = 16


@st.composite
def ink_maps(draw):
    """Float ink maps (1.0 = ink) of any size up to 120x400: random values, random blocks, or a drawn number;
    and whether it is a number."""
    kind = draw(st.sampled_from(["random", "blocks", "number"]))
    if kind == "random":
        shape = (draw(st.integers(1, 60)), draw(st.integers(1, 120)))
        return draw(arrays(np.float32, shape, elements=st.floats(0, 1, width=32))), False
    if kind == "blocks":
        ink = np.zeros((draw(st.integers(8, 120)), draw(st.integers(8, 400))), dtype=np.float32)
        for _ in range(draw(st.integers(1, 30))):
            top, left = draw(st.integers(0, ink.shape[0] - 1)), draw(st.integers(0, ink.shape[1] - 1))
            ink[top : top + draw(st.integers(1, 60)), left : left + draw(st.integers(1, 60))] = draw(st.floats(0.1, 1))
        return ink, False
    text = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=8)))
    picture, _ = draw_number(text, height=draw(st.integers(20, 80)), stroke=draw(st.integers(2, 10)),
                             gap=draw(st.floats(-0.1, 0.8)), slope=draw(st.floats(-0.15, 0.15)), margin=10)
    return np.asarray(picture, dtype=np.float32) / 255, True


@PROPERTY
@given(drawn=ink_maps(), seed=st.integers(0, 2**32 - 1), split=st.sets(st.integers(0, MAX_DIGITS)))
def test_any_ink_segments_into_framed_candidates_inside_the_picture_and_a_reading_in_order(drawn, seed, split):
    """Whichever groups are cut again (`split`, as crowded_groups chooses them). Left to right is asked of
    numbers: random blocks may overlap in columns, and their cut pieces then have no reading order."""
    ink, is_number = drawn
    try:
        segmentation = segment(ink, MAX_DIGITS, frozenset(split))
    except TooManyDigits:
        return
    height, width = ink.shape
    for candidate in segmentation.candidates:
        x, y, box_width, box_height = candidate.box
        assert 0 <= x and 0 <= y and box_width >= 1 and box_height >= 1
        assert x + box_width <= width and y + box_height <= height
        assert candidate.digit.shape == (28, 28) and candidate.digit.dtype == np.uint8
        assert 0 <= candidate.start < candidate.end <= segmentation.pieces
        assert (candidate.group >= 0) == (candidate.kind in ("group", "part"))
    if not segmentation.candidates:
        return
    probabilities = np.random.default_rng(seed).dirichlet(np.full(12, 0.3), size=len(segmentation.candidates))
    digits = best_reading(segmentation, probabilities)
    assert [digit.candidate.start for digit in digits][0] == 0 and digits[-1].candidate.end == segmentation.pieces
    for before, after in zip(digits, digits[1:]):  # each piece read once, or shared by two digits of a cut group
        before, after = before.candidate, after.candidate
        assert after.start == before.end or (
            after.start == before.end - 1 and before.group == after.group and before.group in segmentation.cut
            and before.start < after.start < after.end - 1)
    if not is_number:
        return
    lefts = [digit.candidate.box[0] for digit in digits]
    rights = [digit.candidate.box[0] + digit.candidate.box[2] for digit in digits]
    assert lefts == sorted(lefts) or rights == sorted(rights)  # left to right


def test_more_marks_than_max_digits_are_refused_before_any_is_read():
    ink = np.zeros((40, 400), dtype=np.float32)
    ink[10:30, 5::20] = 1  # twenty bars
    with pytest.raises(TooManyDigits):
        segment(ink, MAX_DIGITS)
    assert len(segment(ink, 20).candidates) >= 20


def test_a_group_read_as_several_digits_or_as_no_sure_digit_is_cut_however_narrow():
    picture, _ = draw_number("11", gap=-0.5)  # two 1s that touch: narrower than one wide digit
    ink = np.asarray(picture, dtype=np.float32) / 255
    whole = segment(ink, MAX_DIGITS)
    assert whole.pieces == 1 and [candidate.kind for candidate in whole.candidates] == ["group"]
    one_digit = np.full((1, 12), 0.001)
    one_digit[0, 1] = 0.989
    assert crowded_groups(whole, one_digit) == frozenset()
    several = one_digit.copy()
    several[0, 1], several[0, SEVERAL_DIGITS] = 0.5, 0.49
    assert crowded_groups(whole, several) == {0}
    no_digit = one_digit.copy()  # a 1 leaning on its neighbour can make the pair read as nothing at all
    no_digit[0, 1], no_digit[0, NOT_A_DIGIT] = 0.3, 0.689
    assert crowded_groups(whole, no_digit) == {0}
    cut = segment(ink, MAX_DIGITS, crowded_groups(whole, several))
    assert cut.pieces >= 2 and any(candidate.end - candidate.start == 1 for candidate in cut.candidates)


def test_the_candidates_of_a_group_cut_into_pieces_and_only_they_go_to_the_reader():
    picture, _ = draw_number("1", margin=10)
    touching, _ = draw_number("80", gap=-0.1, margin=10)
    ink = np.hstack([np.asarray(picture), np.asarray(touching)]).astype(np.float32) / 255
    segmentation = segment(ink, MAX_DIGITS)
    groups = {candidate.group: candidate for candidate in segmentation.candidates if candidate.kind == "group"}
    assert segmentation.cut == {1}
    assert {segmentation.candidates[index].group for index in segmentation.cut_candidates()} == {1}
    chosen = [segmentation.candidates[index] for index in segmentation.cut_candidates()]
    assert groups[0] not in chosen and all(candidate.kind in ("group", "part") for candidate in chosen)
    assert len(chosen) == sum(candidate.group == 1 for candidate in segmentation.candidates) >= 3


def rows(segmentation, read):
    """Model probabilities for each candidate of `segmentation`: read(candidate) gives {class: probability},
    the rest spread evenly."""
    table = np.zeros((len(segmentation.candidates), 12))
    for row, candidate in zip(table, segmentation.candidates):
        chosen = read(candidate)
        row[:] = (1 - sum(chosen.values())) / (12 - len(chosen))
        for index, probability in chosen.items():
            row[index] = probability
    return table


def test_two_touching_digits_read_whole_as_one_doubtful_digit_are_read_as_two():
    """An "08" that the model reads whole as an 8, 59% sure but 40% likely several digits, and cut in two as
    a 0 and an 8, each 80% sure: the two digits win."""
    picture, _ = draw_number("08", gap=-0.3)  # one piece of ink, cut as a group read as several digits is
    segmentation = segment(np.asarray(picture, dtype=np.float32) / 255, MAX_DIGITS, {0})
    middle = segmentation.pieces // 2
    assert segmentation.pieces >= 2 and any(candidate.kind == "group" for candidate in segmentation.candidates)

    def read(candidate):
        if (candidate.start, candidate.end) == (0, segmentation.pieces):
            return {8: 0.59, SEVERAL_DIGITS: 0.4}
        if (candidate.start, candidate.end) in ((0, middle), (middle, segmentation.pieces)):
            return {0 if candidate.start == 0 else 8: 0.8}
        return {NOT_A_DIGIT: 0.9}

    digits = best_reading(segmentation, rows(segmentation, read))
    assert [int(digit.probabilities[:10].argmax()) for digit in digits] == [0, 8]


def test_overlapping_digits_that_no_cut_parts_are_read_sharing_the_piece_between_them():
    """A "49" whose 9's loop reaches over the 4: no column parts them, so the 4 is read with a piece of the
    loop and the 9 with the 4's piece under its loop (as the reader learned), that piece shared."""
    picture, _ = draw_number("49", gap=-0.3)
    segmentation = segment(np.asarray(picture, dtype=np.float32) / 255, MAX_DIGITS, {0})
    last = segmentation.pieces
    assert last >= 3

    def read(candidate):
        if (candidate.start, candidate.end) == (0, last - 1):
            return {4: 0.95}
        if (candidate.start, candidate.end) == (last - 2, last):
            return {9: 0.95}
        if (candidate.start, candidate.end) == (0, last):
            return {SEVERAL_DIGITS: 0.9}
        return {NOT_A_DIGIT: 0.9}

    digits = best_reading(segmentation, rows(segmentation, read))
    assert [int(digit.probabilities[:10].argmax()) for digit in digits] == [4, 9]
    four, nine = (digit.candidate.box for digit in digits)
    assert nine[0] < four[0] + four[2]  # the boxes overlap, as the digits do


@pytest.mark.parametrize("text, sure, several, refused", [
    ("52", 0.9, 0.02, True),  # no digit read at once, nor several, and its digits doubtful: refused
    ("52", 0.9, 0.29, False),  # digits that overlap can read at once as a scribble, and then also as several
    ("52", 0.99, 0.02, False),  # digits written close can read at once as nothing, each a sure digit alone
    ("11", 0.99, 0.02, True)])  # but strokes side by side each read as a sure 1: a hatching, a word
def test_ink_read_at_once_as_no_digit_refuses_the_picture_unless_several_digits_or_sure_ones(text, sure, several,
                                                                                            refused):
    picture, _ = draw_number(text, gap=0.3)
    segmentation = segment(np.asarray(picture, dtype=np.float32) / 255, MAX_DIGITS)
    probabilities = rows(segmentation, lambda candidate: {NOT_A_DIGIT: 0.99 - several, SEVERAL_DIGITS: several}
                         if candidate.kind == "all" else {int(text[candidate.start]): sure})
    digits = best_reading(segmentation, probabilities)
    assert "".join(str(int(digit.probabilities[:10].argmax())) for digit in digits) == text
    assert is_no_number(segmentation, probabilities, digits, refusal_threshold=0.95) == refused


def test_no_ink_has_no_candidates():
    assert segment(np.zeros((30, 30), dtype=np.float32), MAX_DIGITS) == Segmentation(0)


@PROPERTY
@given(text=st.text("0123456789", min_size=1, max_size=20), gap=st.floats(0.3, 0.8), slope=st.floats(-0.1, 0.1))
def test_through_the_api_no_picture_gets_more_than_max_digits_or_a_box_outside_it(client, text, gap, slope):
    picture, _ = draw_number(text, height=40, stroke=5, gap=gap, slope=slope, margin=8)
    response = client.post("/read.json", data=encode(picture), content_type="image/png")
    answer = response.get_json()
    if response.status_code == 422:
        assert answer["error"]["code"] in ("too_many_digits", "not_a_digit")
        assert len(text) > MAX_DIGITS or answer["error"]["code"] == "not_a_digit"
        return
    assert response.status_code == 200, answer
    assert 1 <= len(answer["digits"]) <= MAX_DIGITS
    for box in (digit["box"] for digit in answer["digits"]):
        assert box["x"] + box["width"] <= picture.width and box["y"] + box["height"] <= picture.height


def test_one_big_digit_is_never_cut_in_pieces(client):
    for digit in range(10):
        picture = draw_digit(digit, (500, 300), 280, 30)
        answer = client.post("/read.json", data=encode(picture), content_type="image/png").get_json()
        assert answer.get("number") == str(digit), (digit, answer)
