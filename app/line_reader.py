"""What the line reader's outputs say: the text of a line, each character with the columns it was read at.

The line reader (scripts/train_lines.py) reads a line of ink (app/preprocessing.frame_line) as a sequence of
steps, one every STEP columns, each with the probabilities of CTC's blank (class 0) and of the characters of
ALPHABET. A greedy reading takes each step's likeliest class, merges repeats and drops blanks; a character's
steps are where it was read, so its place in the line and its box. chosen_reader decides whether a picture's
answer is this reading or the segmenter's (app/segmentation.py).
"""

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from app.preprocessing import LINE_INK, LINE_MARGIN

ALPHABET = "0123456789.,-/: "  # the reader's classes after the blank: the digits, then the marks in numbers
MARKS = ".,-/:"  # the marks in numbers that an answer boxes; ALPHABET's space only parts groups of digits
DIGIT_LIKE_MARKS = ".,-:"  # marks the segmenter may read as digits where the line reader's reading stands instead
STEP = 4  # columns of the framed line per step of the reader's output
SPACE_PITCH = 1.2  # a space parts groups this many times further apart than the line's usual digits (tuning set)
# When the line reader's reading stands instead of the segmenter's (chosen_reader), chosen on the tuning set and
# real-dev's cheques and other alphabets (docs/reading.md):
NO_NUMBER_SURE = 0.9  # a line read as no digit is refused when the reader is this sure
NO_NUMBER_LIKELY = 0.3  # or this sure, where the segmenter is less than SEGMENTER_DOUBTFUL sure of its reading
SEGMENTER_DOUBTFUL = 0.7
SEGMENTER_UNSURE = 0.1  # the line reader's reading replaces the segmenter's when the segmenter is less sure than
LINE_SURE = 0.3  # this and the line reader at least this
ONE_DIGIT_SURE = 0.999  # the segmenter's refusal gives way to a line reader this sure of one digit alone
SLASH_SURE = 0.98  # a slash the segmenter read as a 1 stands where the line reader is this sure of it, in a date
DATE = re.compile(r"\d{1,2}/\d{1,2}(/\d{2,4})?")  # "12/06", "1/3/2026": the shape a slash between digits takes


@dataclass
class Character:
    text: str
    steps: tuple  # the first and one past the last step it was read at
    confidence: float  # the likeliest probability of it over its steps


def greedy_reading(probabilities):
    """The characters read from one line's probabilities (steps, 1 + len(ALPHABET)), in reading order."""
    best = np.asarray(probabilities).argmax(axis=1)
    characters, previous = [], 0
    for step, kind in enumerate(best.tolist()):
        if kind and kind == previous:
            characters[-1].steps = (characters[-1].steps[0], step + 1)
            characters[-1].confidence = max(characters[-1].confidence, float(probabilities[step, kind]))
        elif kind:
            characters.append(Character(ALPHABET[kind - 1], (step, step + 1), float(probabilities[step, kind])))
        previous = kind
    return characters


def text_of(characters):
    """The text the characters spell: a space only between groups of digits set apart (spaced_groups), and single."""
    return "".join(character.text for character in spaced_groups(characters))


def spaced_groups(characters):
    """The characters with only the spaces that part groups of digits: a space between two digits that lie at
    least SPACE_PITCH times the line's median distance between neighbouring digits apart. Where every digit
    stands as far from the next, the gaps are the writer's spacing, not groups."""
    def centre(character):
        return (character.steps[0] + character.steps[1]) / 2

    written = [character for character in characters if character.text != " "]
    pitches = [centre(after) - centre(before) for before, after in zip(written, written[1:])
               if before.text.isdigit() and after.text.isdigit()]
    usual = float(np.median(pitches)) if pitches else 0.0
    kept = []
    for index, character in enumerate(characters):
        if character.text != " ":
            kept.append(character)
            continue
        after = next((later for later in characters[index + 1 :] if later.text != " "), None)
        if (kept and kept[-1].text.isdigit() and after is not None and after.text.isdigit()
                and centre(after) - centre(kept[-1]) >= SPACE_PITCH * usual):
            kept.append(character)
    return kept


def digits_of(characters):
    """The digits the characters spell, marks and spaces left out: a reading's `number`."""
    return "".join(character.text for character in characters if character.text.isdigit())


def confidence_of(characters):
    """How sure the reader is of the whole reading: the product of its characters' confidences."""
    return math.prod(character.confidence for character in characters)


def spans(characters, steps):
    """Each character's stretch of the framed line in columns [start, stop): from halfway between it and the
    character before to halfway to the one after, the first from the line's start and the last to its end of
    `steps` steps. A character is read over a step or two of its columns; its neighbours bound the rest."""
    bounds = [0] + [(before.steps[1] + after.steps[0]) * STEP // 2
                    for before, after in zip(characters, characters[1:])] + [steps * STEP]
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class LineReading:
    """What the line reader read in one picture's line, and where that line lies in the picture's ink map."""

    characters: list  # of Character, in reading order
    probabilities: np.ndarray  # (steps, 1 + len(ALPHABET))
    ink: np.ndarray  # the picture's ink map
    rows: slice  # the ink map's rows and columns that were framed (preprocessing.line_crop)
    cols: slice
    width: int  # of the framed line, in columns, margins included

    @property
    def text(self):
        return text_of(self.characters)

    def ink_columns(self, span):
        """A span of the framed line's columns as the ink map's columns (start, stop)."""
        inner = self.width - 2 * LINE_MARGIN
        scale = (self.cols.stop - self.cols.start) / max(inner, 1)
        start = int(self.cols.start) + max(span[0] - LINE_MARGIN, 0) * scale
        stop = int(self.cols.start) + min(span[1] - LINE_MARGIN, inner) * scale
        return math.floor(start), max(math.ceil(stop), math.floor(start) + 1)

    @cached_property
    def boxes(self):
        """Each character's box (x, y, width, height) in ink-map pixels: the ink within its span's columns that
        touches the columns it was read at (not a neighbour's edge), or all of that ink if none does."""
        boxes = []
        for character, span in zip(self.characters, spans(self.characters, len(self.probabilities))):
            start, stop = self.ink_columns(span)
            window = np.asarray(self.ink[self.rows, start:stop]) >= LINE_INK
            core_start, core_stop = self.ink_columns((character.steps[0] * STEP, character.steps[1] * STEP))
            labels, _ = ndimage.label(window, structure=np.ones((3, 3), dtype=bool))
            touching = np.unique(labels[:, max(core_start - start, 0) : max(core_stop - start, 1)])
            if touching.any():
                window = np.isin(labels, touching[touching > 0])
            rows, cols = np.flatnonzero(window.any(axis=1)), np.flatnonzero(window.any(axis=0))
            top = int(self.rows.start)
            if rows.size == 0:
                boxes.append((start, top, stop - start, int(self.rows.stop) - top))
            else:
                boxes.append((start + int(cols[0]), top + int(rows[0]), int(cols[-1] - cols[0]) + 1,
                              int(rows[-1] - rows[0]) + 1))
        return boxes

    def no_digit_confidence(self):
        """How sure the reader is that the line holds no digit: at its most digit-like step, the chance of none."""
        return float(1 - self.probabilities[:, 1:11].sum(axis=1).max(initial=0))

    def digit_probabilities(self, character):
        """The ten digits' probabilities at the step where `character` was read surest."""
        kind = ALPHABET.index(character.text) + 1
        steps = self.probabilities[character.steps[0] : character.steps[1]]
        return steps[int(np.argmax(steps[:, kind])), 1:11]


def chosen_reader(segmenter_number, segmenter_confidence, segmenter_refused, reading):
    """Which reading a picture's answer is: "segmenter" (the classifier over cut candidates), "line" (the line
    reader's) or "refuse" (no number). The segmenter's refusals stand, but where the line reader is all but
    certain of one digit alone. The line reader refuses a line it is sure holds no digit (a dash, a row of
    dashes, a stroke), or likely holds none where the segmenter doubts its reading too (a letter of another
    alphabet); and its reading, when it is sure of it, replaces one of the segmenter's that disagrees and is
    doubtful or read its marks as digits."""
    number, confidence = digits_of(reading.characters), confidence_of(reading.characters)
    if segmenter_refused:  # a wide digit, squeezed into the classifier's square, can look like a letter to it
        return "line" if len(number) == 1 and confidence >= ONE_DIGIT_SURE else "refuse"
    if not number:
        no_digit = reading.no_digit_confidence()
        doubted = no_digit >= NO_NUMBER_LIKELY and segmenter_confidence < SEGMENTER_DOUBTFUL
        return "refuse" if no_digit >= NO_NUMBER_SURE or doubted else "segmenter"
    if number == segmenter_number or confidence < LINE_SURE:
        return "segmenter"
    if segmenter_confidence < SEGMENTER_UNSURE or marks_read_as_digits(segmenter_number, reading.characters):
        return "line"
    return "segmenter"


def marks_read_as_digits(segmenter_number, characters):
    """Whether the segmenter's number is the line reader's digits with some of its marks read as digits, as a
    classifier of single digits reads them: a dash, a colon or a comma's tail as a 1, a comma as a 9 ("17" for
    "-7", "79939" for "7,939"). A slash counts, as a 1, only in a date the line reader is SLASH_SURE of
    ("12106" for "12/06"): it also reads a slanted 1 as a slash, and elsewhere "1611" would become "16/1"."""
    if segmenter_number is None:
        return False
    is_date = DATE.fullmatch("".join(character.text for character in characters)) is not None

    def read_as(character):
        if character.text.isdigit():
            return character.text
        if character.text in DIGIT_LIKE_MARKS:
            return r"\d?"
        return "1?" if character.text == "/" and is_date and character.confidence >= SLASH_SURE else ""

    pattern = "".join(read_as(character) for character in characters)
    return re.fullmatch(pattern, segmenter_number) is not None
