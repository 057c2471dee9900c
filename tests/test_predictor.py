"""The predictor: the same answers on either Keras backend, and every caller gets its own row, in order."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from app.predictor import BATCH_SIZES, Predictor, _architecture, _forward, _predict, _program
from app.preprocessing import frame_digits, to_model_input
from scripts.mnist_data import load_mnist
from tests.conftest import ROOT

MODEL = ROOT / "model" / "model.h5"
READER = ROOT / "model" / "reader.h5"
HANDS = ROOT / "model" / "hands.h5"


@pytest.fixture(scope="module")
def digits():
    mnist = load_mnist()
    return frame_digits(mnist.x_test[:130]), mnist.y_test[:130]


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(MODEL)


def test_the_service_runs_keras_on_jax(predictor):
    assert keras.backend.backend() == "jax"


@pytest.mark.parametrize("path, model", [(MODEL, "model"), (READER, "reader"), (HANDS, "hands")])
def test_each_model_gives_what_keras_own_loader_gives(predictor, digits, path, model):
    """Predictor.load builds the models with zeros for initial values before reading their weights: any weight
    left unread would show here."""
    reference = keras.models.load_model(path, compile=False)
    pixels = to_model_input(digits[0])
    np.testing.assert_allclose(_predict(getattr(predictor, model), digits[0]), reference.predict_on_batch(pixels),
                               atol=1e-6)


def test_the_classifier_and_the_reader_share_one_compiled_program_and_other_networks_do_not(predictor):
    """One program per batch size serves both models (their weights are its arguments): a second set would cost
    each worker about 5 MB a size. A network that computes differently with weights of the same shapes gets
    its own."""
    assert _program(predictor.model.layers[0]) is _program(predictor.reader.layers[0])
    assert _program(predictor.model.layers[0]) is _program(predictor.hands.layers[0])
    same = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same")])
    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="valid")])
    assert _architecture(same) != _architecture(other)
    assert _architecture(same) == _architecture(keras.models.clone_model(same))


def test_each_model_call_runs_on_the_calling_thread(predictor):
    """JAX's default hands each call to a thread of its own and returns before it has run: that hand-over
    cost more than half of a one-digit call's time (app/predictor.py). Run inline, a call has finished
    when it returns, for every batch a picture or a number up to 16 digits makes. (Counting this thread's
    waits cannot tell the two apart: on some CPUs XLA spreads even a one-digit call over its own pool.)"""
    forward = _forward(predictor.model)
    np.asarray(forward(np.zeros((BATCH_SIZES[-1], 28, 28, 1), dtype=np.float32)))
    finished = [forward(np.zeros((size, 28, 28, 1), dtype=np.float32)).is_ready()
                for size in BATCH_SIZES if size <= 16 for _ in range(10)]
    assert all(finished)


def test_jax_and_tensorflow_give_the_same_probabilities(predictor, digits, tmp_path):
    np.save(tmp_path / "digits.npy", digits[0])
    script = ("import sys, json, numpy as np; from app.predictor import Predictor; "
              f"p = Predictor.load({str(MODEL)!r}); d = np.load({str(tmp_path / 'digits.npy')!r}); "
              "import keras; print(json.dumps([keras.backend.backend(), p.predict(d).tolist(), "
              "p.read_pieces(d).tolist()]))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-2000:]
    backend, classifier, reader = json.loads(result.stdout.strip().splitlines()[-1])
    assert backend == "tensorflow"
    np.testing.assert_allclose(predictor.predict(digits[0]), classifier, atol=1e-5)
    np.testing.assert_allclose(predictor.read_pieces(digits[0]), reader, atol=1e-5)


@pytest.mark.parametrize("model", ["predict", "classify", "read_pieces"])
@pytest.mark.parametrize("count", [1, 3, 17, 64, 65, 130])
def test_any_number_of_digits_gets_its_own_rows_in_order(predictor, digits, count, model):
    """Batches are padded to compiled sizes and split at the largest: no row is lost, shifted or mixed up."""
    together = getattr(predictor, model)(digits[0][:count])
    one_by_one = np.concatenate([getattr(predictor, model)(digits[0][i : i + 1]) for i in range(count)])
    assert together.shape == (count, 12)  # ten digits, not a digit, several digits
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    assert np.mean(together[:, :10].argmax(axis=1) == digits[1][:count]) > 0.95

