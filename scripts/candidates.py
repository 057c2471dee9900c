"""Training pictures for the reader: what the segmenter makes of numbers whose digits touch, each labelled
by whose ink it holds.

The reader is the model that scores the candidate digits of a group of ink cut into pieces (app/segmentation.py).
A straight cut through touching digits leaves slivers of a neighbour in a digit's crop, and makes halves of
digits and pairs of them as well; the classifier never saw any of these. Here the numbers are written from
MNIST digits with each digit on a layer of its own, so every candidate's ink can be traced to its digits:
one digit nearly whole, with slivers or a chunk of a neighbour but no other digit half there, is that digit
(where digits overlap, no cut leaves one without a piece of the other); two digits each half there or more
are several digits; and less than most of one digit is not a digit (a fragment).
"""

import numpy as np

from app.predictor import NOT_A_DIGIT, SEVERAL_DIGITS
from app.segmentation import INK as INK_LEVEL
from app.segmentation import TooManyDigits, segment
from scripts import glyphs

SPACING = (-0.15, 0.08)  # gaps between neighbours, as a share of their height: overlapping to barely apart
WHOLE, ALONE = 0.9, 0.6  # a digit: at least this share of its ink, and at least this share of the candidate's,
PRESENT = 0.5  # with no other digit this much there; several digits: at least this share of each of two or more
FRAGMENT = 0.75  # not a digit: less than this share of any digit's ink
INK = round(INK_LEVEL * 255)  # the uint8 level that counts as ink, as in the segmenter


def label(layers, digit_labels, box):
    """The class of the candidate in `box` (x, y, width, height) of a number drawn as `layers` (one uint8 picture
    per digit): a digit, NOT_A_DIGIT or SEVERAL_DIGITS; None when it is none of them clearly."""
    x, y, width, height = box
    region = layers[:, y : y + height, x : x + width].astype(np.float32)
    ink = region.max(axis=0)
    owner = region.argmax(axis=0)
    owned = np.array([ink[(owner == index) & (ink >= INK)].sum() for index in range(len(layers))])
    totals = np.array([layer[layer >= INK].sum(dtype=np.float64) for layer in layers])
    share, whole = owned / max(owned.sum(), 1), owned / totals
    main, present = int(share.argmax()), int(np.sum(whole >= PRESENT))
    if whole[main] >= WHOLE and share[main] >= ALONE and present == 1:
        return int(digit_labels[main])
    if present >= 2:
        return SEVERAL_DIGITS
    if whole.max() < FRAGMENT:
        return NOT_A_DIGIT
    return None


def candidates(digits, labels, count, rng, max_digits=16):
    """Framed candidates (n, 28, 28) and their classes from `count` numbers of 2-6 of `digits`, every group cut
    as the segmenter cuts a group that may hold several digits: as many fragments as digits at most, and half as
    many pairs, so that the reader is not taught to doubt every digit."""
    pictures, classes = [], []
    for _ in range(count):
        chosen = rng.choice(len(digits), int(rng.integers(2, 7)), replace=False)
        layers, _ = glyphs.number_layers(digits[chosen], rng, float(rng.uniform(*SPACING)))
        try:
            segmentation = segment(layers.max(axis=0) * np.float32(1 / 255), max_digits, frozenset(range(max_digits)))
        except TooManyDigits:
            continue
        for candidate in segmentation.candidates:
            if candidate.kind != "all" and (found := label(layers, labels[chosen], candidate.box)) is not None:
                pictures.append(candidate.digit)
                classes.append(found)
    pictures, classes = np.stack(pictures), np.array(classes)
    read = int(np.sum(classes < 10))
    dropped = [rng.permutation(np.flatnonzero(classes == kind))[most:] for kind, most in
               [(NOT_A_DIGIT, read), (SEVERAL_DIGITS, read // 2)]]
    kept = np.setdiff1d(np.arange(len(classes)), np.concatenate(dropped))
    return pictures[kept], classes[kept]
