"""Split the ink of a picture of a number into its digits, in reading order (left to right).

The ink map that preprocessing makes is cut into connected pieces of ink. Pieces that stand above one
another (a 5's flag, a 4 drawn in two strokes, a 7's bar) are joined into groups; a wide group (neighbours
that touch or overlap) is cut at its thinnest columns into more pieces than it may have digits, and so is a
narrow one that the model reads as several digits (two 1s that touch) or as no digit it is sure of (a 1 leaning
on its neighbour), when it is segmented again. Which joins and cuts make digits is left to the models: every
plausible digit is framed as MNIST was made (`frame_digit`, as in training) and read, those of a group cut into
pieces by the reader (which learned what such cuts make), the rest by the classifier, and the reading whose
digits they are surest of wins (`best_reading`).
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from app.predictor import SEVERAL_DIGITS, refusal
from app.preprocessing import frame_digit

INK = 0.2  # ink-map level that counts as ink when the pieces are found
SPECK = 0.3  # groups smaller than this share of the tallest piece's height on both sides are no digit (a dot, a
# speck); a dot above or within a digit (a smiley's eyes) is part of that digit's group
MOST_MARKS = 8  # more pieces than this many per digit read are grouped only when they are of a digit's size
OVERLAP = 0.5  # pieces whose columns overlap by this share of the narrower one belong to one digit
WIDE = 1.1  # a group wider than this share of the line's height may hold several digits
CROWDED = 0.02  # ... and so may a narrower one that the model, read whole, gives this chance of several digits,
UNSURE = 0.5  # or whose likeliest digit is less likely than this (a 1 leaning on its neighbour: "10" reads as nothing)
CUT_EVERY = 0.3  # ... and is cut at least this often (as a share of the height), besides at its thinnest columns
SURELY_SEVERAL = 1.3  # a group wider than this share, surely several digits, is cut more often: overlapping
CUT_EVERY_SEVERAL = 0.24  # digits leave fewer minima (at least this often)
CUT_MARGIN = 0.15  # no cut closer than this share of the height to another or to the group's edge
MOST_PIECES = 4  # most cut pieces of a group that one digit may span
JOIN_GAP = 0.35  # groups closer than this share of the height may be pieces of one digit
DIGIT_WIDTH = 1.2  # ... when together they are no wider than this share of the height (a broken 5 with its flag)
DIGIT_PRIOR = math.log(0.7)  # each digit of a reading costs this much, so that a digit is not cut in two lightly,
SEVERAL_WEIGHT = 3  # and a candidate counts log(1 - its chance of being several digits) this many times over, so
# that two touching digits read whole as one are cut
NUMBER_LIKE = 0.1  # all the ink read whole as no digit refuses the picture, unless at least this likely several digits,
SURE_DIGITS = 0.98  # or read as digits each at least this likely, not all of them 1s (the strokes of a drawing)
# (these constants are chosen on numbers of the validation digits that training holds out, and on non-digits in the
# fonts that training uses)


class TooManyDigits(ValueError):
    """The picture holds more digits than the service reads in one number."""


@dataclass
class Candidate:
    """A stretch of ink that may be one digit: where it lies in the ink map, and its 28x28 framing."""

    start: int  # the first and one past the last cut piece it spans, in reading order
    end: int
    group: int  # the group it is (kind "group") or is part of ("part"); -1 for joined groups and all the ink
    box: tuple  # (x, y, width, height) of its ink, in ink-map pixels
    digit: np.ndarray
    kind: str  # "group" (one group, whole), "part" (pieces of one group), "joined" (whole groups) or "all"


@dataclass
class Segmentation:
    pieces: int  # cut pieces, in reading order
    candidates: list = field(default_factory=list)
    cut: frozenset = frozenset()  # the groups cut into several pieces, whose candidates the reader scores

    def cut_candidates(self):
        """The indices of the candidates that lie within a group cut into pieces, the whole group included."""
        return [index for index, candidate in enumerate(self.candidates) if candidate.group in self.cut]


@dataclass
class Digit:
    """A digit of the chosen reading: its candidate and the model's probabilities (12) for it."""

    candidate: Candidate
    probabilities: np.ndarray


def segment(ink, max_digits, split=frozenset()):
    """The candidate digits of an ink map (float, 1.0 = ink), over a picture with one line of digits; the
    groups numbered in `split` (from `crowded_groups`) are cut whatever their width."""
    labels, count = ndimage.label(ink >= INK, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return Segmentation(0)
    slices = ndimage.find_objects(labels)
    height = max(rows.stop - rows.start for rows, _ in slices)
    pieces = list(range(1, count + 1))
    if count > MOST_MARKS * max_digits:  # a page of text or of noise: only marks of a digit's size are grouped
        pieces = [label for label in pieces if max(_extent([label], slices)[2:]) >= SPECK * height]
        if len(pieces) > MOST_MARKS * max_digits:
            raise TooManyDigits(f"the picture holds more than {max_digits} digits or marks: send at most {max_digits}")
    groups = [group for group in _groups(pieces, slices) if max(_extent(group, slices)[2:]) >= SPECK * height]
    if len(groups) > max_digits:
        raise TooManyDigits(f"the picture holds more than {max_digits} digits or marks: send at most {max_digits}")
    line = max(_extent(group, slices)[3] for group in groups)
    atoms = []  # (group index, first column, one past the last column), in reading order
    for number, group in enumerate(groups):
        atoms += [(number, left, right) for left, right in _cuts(ink, labels, group, slices, line, number in split)]
    group_atoms = {}
    for index, (number, _, _) in enumerate(atoms):
        group_atoms.setdefault(number, []).append(index)
    segmentation = Segmentation(len(atoms), cut=frozenset(number for number, indices in group_atoms.items()
                                                          if len(indices) > 1))
    for number, indices in group_atoms.items():
        first, last = indices[0], indices[-1] + 1
        for start in range(first, last):
            for end in range(start + 1, min(start + MOST_PIECES, last) + 1):
                kind = "group" if start == first and end == last else "part"
                _add(segmentation, ink, labels, groups[number], atoms[start][1], atoms[end - 1][2], start, end,
                     number, kind)
    for number in range(len(groups) - 1):  # whole groups joined: the pieces of a broken stroke
        for last in range(number + 1, min(number + 3, len(groups))):
            joined = [label for group in groups[number : last + 1] for label in group]
            x, _, width, _ = _extent(joined, slices)
            gaps_small = all(_gap(groups[k], groups[k + 1], slices) <= JOIN_GAP * line for k in range(number, last))
            if width <= DIGIT_WIDTH * line and gaps_small:
                _add(segmentation, ink, labels, joined, x, x + width, group_atoms[number][0],
                     group_atoms[last][-1] + 1, -1, "joined")
    if len(atoms) > 1:  # all the ink at once: a number reads as several digits, a drawing as none
        _add(segmentation, ink, labels, [label for group in groups for label in group], 0, ink.shape[1], 0,
             len(atoms), -1, "all")
    return segmentation


def crowded_groups(segmentation, probabilities):
    """The groups left whole that the model reads as likely several digits, or as no digit it is sure of (two
    digits that overlap can read as neither): to be cut in a second segmentation."""
    return frozenset(candidate.group for candidate, row in zip(segmentation.candidates, probabilities)
                     if candidate.kind == "group" and candidate.end - candidate.start == 1
                     and (row[SEVERAL_DIGITS] >= CROWDED or row[:10].max() < UNSURE))


def best_reading(segmentation, probabilities):
    """The digits of the likeliest reading (a list of Digit, left to right), from each candidate's
    probabilities: the path over the cut pieces whose digits the model is surest of, each digit costing
    DIGIT_PRIOR, and each candidate that may be several digits the more the likelier it is. Two neighbours
    within a group cut into pieces may share one piece: digits that overlap leave no column to cut between
    them (a 9's loop over its neighbour), and each then takes the piece they share."""
    best = [(0.0, None, 0)] + [(-math.inf, None, 0)] * segmentation.pieces  # score, last digit, where it starts from
    for candidate, row in sorted(zip(segmentation.candidates, probabilities), key=lambda pair: pair[0].end):
        if candidate.kind == "all":
            continue
        several = SEVERAL_WEIGHT * math.log(max(1 - float(row[SEVERAL_DIGITS]), 1e-12))
        own = math.log(float(row[:10].max()) + 1e-12) + DIGIT_PRIOR + several
        starts = [candidate.start]  # where the digit before it ends: at its first piece, or after it (shared)
        if candidate.end - candidate.start >= 2 and candidate.group in segmentation.cut:
            before = best[candidate.start + 1][1]  # the best digit that ends after this one's first piece
            if before and before.candidate.group == candidate.group and before.candidate.start < candidate.start:
                starts.append(candidate.start + 1)
        for start in starts:
            score = best[start][0] + own
            if score > best[candidate.end][0]:
                best[candidate.end] = (score, Digit(candidate, row), start)
    digits, end = [], segmentation.pieces
    while end > 0:
        _, digit, end = best[end]
        digits.append(digit)
    return digits[::-1]


def is_no_number(segmentation, probabilities, digits, refusal_threshold):
    """Whether the picture is refused as no digits at all: its ink read at once is no digit (a hatching, a
    drawing, a word) with little chance of being several digits (digits that touch can read whole as a
    scribble) and its reading is not one of sure digits (a "10" written close can read whole as nothing), or
    every digit of its reading is."""
    ink_refused = any(candidate.kind == "all" and refusal(row, refusal_threshold) == "not_a_digit"
                      and row[SEVERAL_DIGITS] < NUMBER_LIKE
                      for candidate, row in zip(segmentation.candidates, probabilities))
    if ink_refused and not (all(digit.probabilities[:10].max() >= SURE_DIGITS for digit in digits)
                            and any(digit.probabilities[:10].argmax() != 1 for digit in digits)):
        return True
    return all(refusal(digit.probabilities, refusal_threshold) == "not_a_digit" for digit in digits)


def _groups(pieces, slices):
    """Pieces (labels) joined where their columns overlap, sorted by their centres, left to right."""
    groups, spans = [], []  # each group's labels, and its columns [start, stop)
    for label in sorted(pieces, key=lambda label: slices[label - 1][1].start):
        cols = slices[label - 1][1]
        for group, span in zip(groups, spans):
            overlap = min(cols.stop, span[1]) - max(cols.start, span[0])
            if overlap >= OVERLAP * min(cols.stop - cols.start, span[1] - span[0]):
                group.append(label)
                span[:] = [min(span[0], cols.start), max(span[1], cols.stop)]
                break
        else:
            groups.append([label])
            spans.append([cols.start, cols.stop])
    return [group for _, group in sorted(zip(spans, groups), key=lambda pair: pair[0][0] + pair[0][1])]


def _extent(group, slices):
    """(x, y, width, height) around the group's pieces."""
    top = min(slices[label - 1][0].start for label in group)
    bottom = max(slices[label - 1][0].stop for label in group)
    left = min(slices[label - 1][1].start for label in group)
    right = max(slices[label - 1][1].stop for label in group)
    return left, top, right - left, bottom - top


def _gap(left_group, right_group, slices):
    left_x, _, left_width, _ = _extent(left_group, slices)
    return _extent(right_group, slices)[0] - (left_x + left_width)


def _cuts(ink, labels, group, slices, line, split):
    """The column ranges a group is cut into: itself when it is no wider than one digit and not to `split`,
    else pieces cut at the columns where the fewest of its ink's pixels lie (its profile's local minima) and
    at even steps across it, where touching digits overlap and leave no minimum; more pieces than digits, to
    be joined."""
    left, top, width, height = _extent(group, slices)
    if width <= WIDE * line and not split:
        return [(left, left + width)]
    window = _in_group(labels[top : top + height, left : left + width], group)
    profile = np.convolve((ink[top : top + height, left : left + width] * window).sum(axis=0),
                          np.ones(3) / 3, mode="same")
    margin = max(1, round(CUT_MARGIN * line))
    minima = [column for column in range(margin, width - margin)
              if profile[column] == profile[max(column - margin, 0) : column + margin + 1].min()]
    steps = math.ceil(width / ((CUT_EVERY if width <= SURELY_SEVERAL * line else CUT_EVERY_SEVERAL) * line))
    even = [round(width * k / steps) for k in range(1, steps)]
    cuts = []
    for column in sorted(minima, key=lambda column: profile[column]) + even:
        if margin <= column <= width - margin and all(abs(column - cut) >= margin for cut in cuts):
            cuts.append(int(column))
    edges = [left] + sorted(left + cut for cut in cuts) + [left + width]
    return list(zip(edges[:-1], edges[1:]))


def _add(segmentation, ink, labels, group, left, right, start, end, number, kind):
    """A candidate of the group's ink within columns [left, right), framed, if it holds any ink."""
    window = ink[:, left:right] * _in_group(labels[:, left:right], group)
    rows = np.flatnonzero(window.max(axis=1) >= INK)
    cols = np.flatnonzero(window.max(axis=0) >= INK)
    if rows.size == 0:
        return
    crop = window[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = (left + int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    segmentation.candidates.append(Candidate(start, end, number, box, frame_digit(crop), kind))


def _in_group(labels, group):
    """Where a window of the label map holds the group's pieces: by one comparison for a group of one piece,
    the common case, where np.isin's set-up would cost more than the comparison itself."""
    return labels == group[0] if len(group) == 1 else np.isin(labels, group)
