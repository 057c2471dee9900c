"""The shipped models, loaded once and checked against their card: preprocessed digits in, probabilities out.

The classifier reads twelve classes: the ten digits, then two it refuses to read, "not a digit" (a letter, a
symbol, a drawing) and "several digits". A picture is refused when those two together are at least as
likely as the card's threshold, fitted by scripts/train.py on held-out pictures. The reader is the same
network trained on with what the segmenter cuts out of touching digits (slivers of neighbours, halves, pairs),
for the candidates of /read.json within a group of ink cut into pieces. Where the card names a network of many
hands beside the classifier (hands.h5), one digit's answer is the mean of the two's probabilities, at a
temperature of its own; /read.json's candidates are read by the classifier and the reader alone.
"""

import hashlib
import io
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.line_reader import ALPHABET, STEP
from app.preprocessing import LINE_HEIGHT, LINE_WIDTHS, padded_lines, to_model_input

# Serving runs Keras on JAX: the same .h5 file and the same probabilities as TensorFlow (a test checks it),
# at about 350 MB and 2 s to start per process instead of 580 MB and 8 s. Training stays on TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NOT_A_DIGIT, SEVERAL_DIGITS = 10, 11  # the model's classes after the ten digits: pictures it refuses to read
REFUSALS = {NOT_A_DIGIT: "not_a_digit", SEVERAL_DIGITS: "several_digits"}
BATCH_SIZES = (1, 5, 8, 16, 64)  # batches are padded to these, each compiled once at start-up (~5 MB each)
CHECK_DIGIT = np.zeros((28, 28), dtype=np.uint8)  # a plain "1", a bar in MNIST's framing: warm-up and readiness
CHECK_DIGIT[4:24, 13:16] = 255


class ModelError(RuntimeError):
    """The model cannot be served: missing, unreadable, or not the file its card describes."""


class Predictor:
    def __init__(self, model, reader, card, line_reader=None, hands=None):
        self.model = model
        self.hands = hands
        self.reader = reader
        self.line_reader = line_reader
        self.card = card
        self.version = card["version"]
        self.refusal_threshold = card["refusal"]["threshold"]
        # /read.json's candidates are read by the classifier alone, at its own threshold, as its rules were tuned
        self.reading_threshold = (card["hands"]["classifier_alone"]["refusal"] if hands is not None
                                  else self.refusal_threshold)

    @classmethod
    def load(cls, model_path):
        """Load `model_path` and the reader beside it once `checked_card` vouches for them, and the line reader
        beside them if its card (lines.json) is there and vouches for it; the card served holds both cards. The
        network of many hands too, where the card names one."""
        card = checked_card(model_path)
        lines_card = checked_lines_card(model_path)
        line_reader = None
        if lines_card:
            card = {**card, "line_reader": lines_card}
            line_reader = _load_line_reader(str(Path(model_path).with_name(lines_card["file"])), lines_card["sha256"])
        hands = (_load_keras_model(str(Path(model_path).with_name(card["hands"]["file"])), card["hands"]["sha256"])
                 if card.get("hands") else None)
        return cls(_load_keras_model(str(model_path), card["sha256"]),
                   _load_keras_model(str(reader_path(model_path, card)), card["reader"]["sha256"]), card, line_reader,
                   hands)

    def reads_correctly(self):
        """Whether the model reads CHECK_DIGIT as 1: readiness."""
        return int(self.predict(CHECK_DIGIT[None])[0].argmax()) == 1

    def predict(self, digits):
        """Probabilities (n, 12) for uint8 MNIST-convention pictures (n, 28, 28), in order: the ten digits,
        then not a digit, then several digits: the classifier's, or its mean with the network of many hands' at
        the pair's temperature (the mean of two networks is less sure than either)."""
        probabilities = self.classify(digits)
        if self.hands is None:
            return probabilities
        sharpened = ((probabilities + _predict(self.hands, digits)) / 2) ** (1 / self.card["hands"]["temperature"])
        return sharpened / sharpened.sum(axis=1, keepdims=True)

    def classify(self, digits):
        """`predict` by the classifier alone, for /read.json's candidates that are whole groups of ink."""
        return _predict(self.model, digits)

    def read_pieces(self, digits):
        """`predict` by the reader, for candidates cut out of a group of ink that may hold several digits."""
        return _predict(self.reader, digits)

    def read_lines(self, lines):
        """The line reader's probabilities for uint8 lines of preprocessing.frame_line: for each, an array
        (steps, 1 + len(line_reader.ALPHABET)), one step per STEP of its columns. One line a call, padded to
        one of LINE_WIDTHS: three compiled programs, where batches of them would take a worker's memory."""
        forward = _forward(self.line_reader)
        return [np.asarray(forward(padded_lines([line])))[0, : line.shape[1] // STEP].astype(np.float64)
                for line in lines]


def checked_card(model_path):
    """The model card beside `model_path`, after checking that the file is the one it describes."""
    model_path = Path(model_path)
    card_path = model_path.with_name("model.json")
    try:
        weights = model_path.read_bytes()
        card = json.loads(card_path.read_text())
    except OSError as error:
        raise ModelError(f"cannot read the model: {error}; run scripts/train.py or set MODEL_PATH")
    except ValueError as error:
        raise ModelError(f"{card_path} is not valid JSON ({error}): regenerate it with scripts/train.py")
    digest = hashlib.sha256(weights).hexdigest()
    if not isinstance(card, dict) or digest != card.get("sha256") or "version" not in card:
        described = str(card.get("sha256") if isinstance(card, dict) else None)[:12]
        raise ModelError(f"{model_path} has sha256 {digest[:12]}..., but {card_path} describes {described}...: "
                         f"the two do not belong together; regenerate both with scripts/train.py")
    if "threshold" not in card.get("refusal", {}):
        raise ModelError(f"{card_path} gives no refusal threshold: the model predates the refusal classes; "
                         f"regenerate it with scripts/train.py")
    if not isinstance(card.get("reader"), dict) or "file" not in card["reader"]:
        raise ModelError(f"{card_path} names no reader: the model predates it; regenerate both with scripts/train.py")
    saved_configuration(model_path, io.BytesIO(weights))
    _check_network(reader_path(model_path, card), card["reader"].get("sha256"), card_path, "the reader",
                   "regenerate it with scripts/train.py --reader-only")
    if card.get("hands"):
        _check_network(Path(model_path).with_name(Path(str(card["hands"].get("file"))).name),
                       card["hands"].get("sha256"), card_path, "the network of many hands",
                       "pair it again with scripts/train.py --hands")
        if "temperature" not in card["hands"] or "refusal" not in card["hands"].get("classifier_alone", {}):
            raise ModelError(f"{card_path} gives no temperature or no classifier's own threshold for the network "
                             f"of many hands: pair it again with scripts/train.py --hands")
    return card


def _check_network(path, sha256, card_path, what, remedy):
    """That the network beside the classifier at `path` can be read, is the one the card describes by `sha256`
    and holds a saved Sequential; else the ModelError that says so and what to do (`remedy`)."""
    try:
        contents = path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read {what}: {error}; {remedy}")
    if hashlib.sha256(contents).hexdigest() != sha256:
        raise ModelError(f"{path} is not {what} that {card_path} describes: the two do not belong together; {remedy}")
    saved_configuration(path, io.BytesIO(contents))


def checked_lines_card(model_path):
    """The line reader's card beside `model_path` (lines.json, from scripts/train_lines.py) after checking that
    the file it names is the one it describes; None when there is none."""
    card_path = Path(model_path).with_name("lines.json")
    if not card_path.exists():
        return None
    try:
        card = json.loads(card_path.read_text())
        path = card_path.with_name(Path(card["file"]).name)
        weights = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"cannot read the line reader that {card_path} describes ({type(error).__name__}: {error}): "
                         f"regenerate both with scripts/train_lines.py, or remove {card_path.name}")
    if hashlib.sha256(weights).hexdigest() != card.get("sha256"):
        raise ModelError(f"{path} is not the line reader that {card_path} describes: the two do not belong "
                         f"together; regenerate both with scripts/train_lines.py")
    if card.get("alphabet") != ALPHABET:
        raise ModelError(f"{path} reads {card.get('alphabet')!r}, not the service's {ALPHABET!r}: regenerate it "
                         f"with scripts/train_lines.py")
    saved_configuration(path, io.BytesIO(weights))
    return card


def reader_path(model_path, card):
    """Where the reader that the card names lies: beside the classifier."""
    return Path(model_path).with_name(Path(card["reader"]["file"]).name)


def saved_configuration(path, contents=None):
    """The network's configuration as scripts/train.py saved it in the .h5 file at `path` (a Sequential),
    after checking that the file holds one and its weights; read from `contents` when given. With h5py
    alone, so that the gunicorn master can refuse a damaged file before it starts any worker, without
    Keras building anything."""
    import h5py

    try:
        with h5py.File(contents or path, "r") as file:
            config = json.loads(file.attrs["model_config"])
            if "model_weights" not in file:
                raise KeyError("no model_weights group")
    except Exception as error:  # h5py raises many types for a damaged file
        raise ModelError(f"{path} is not a Keras model that can be loaded ({type(error).__name__}: {error})")
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        raise ModelError(f"{path} is not a Keras model that can be loaded: not the Sequential network that "
                         f"scripts/train.py saves")
    return config


def postprocess(probabilities, refusal_threshold):
    """One row of the model's probabilities as the answer a client reads, and the code of the refusal
    (None, "not_a_digit" or "several_digits"). The answer holds the ten digits' probabilities: they add up
    to less than 1 by the chance that the picture is no single digit at all."""
    digits = probabilities[:10]
    rounded = [round(float(p), 6) for p in digits]
    digit = int(np.argmax(digits))
    return {"digit": digit, "confidence": rounded[digit], "probabilities": rounded}, refusal(probabilities,
                                                                                             refusal_threshold)


def refusal(probabilities, refusal_threshold):
    """The code of the refusal of one row of the model's probabilities, or None when it is read: refused
    when its refusal classes together reach the threshold, with the code of the likelier of the two."""
    if float(probabilities[NOT_A_DIGIT:].sum()) < refusal_threshold:
        return None
    return REFUSALS[NOT_A_DIGIT + int(np.argmax(probabilities[NOT_A_DIGIT:]))]


def _predict(model, digits):
    pixels = to_model_input(digits)
    largest = BATCH_SIZES[-1]
    rows = [_predict_padded(model, pixels[start : start + largest]) for start in range(0, len(pixels), largest)]
    return np.concatenate(rows).astype(np.float64)


@lru_cache(maxsize=4)
def _load_keras_model(path, sha256):
    """Keyed by content too, so one process (the tests) never loads the same file twice."""
    model = _loadable_model(path)
    for size in BATCH_SIZES:  # compile every batch shape now (once for both models), so that no request waits
        _forward(model)(np.zeros((size, 28, 28, 1), dtype=np.float32))
    return model


def _loadable_model(path):
    """The model at `path` (_read_keras_model), or the ModelError that says it cannot be loaded."""
    _run_jax_computations_inline()
    try:
        return _read_keras_model(path)
    except ModelError:
        raise
    except Exception as error:  # h5py and Keras raise many types for a damaged file
        raise ModelError(f"{path} is not a Keras model that can be loaded ({type(error).__name__}: {error})")


def _run_jax_computations_inline():
    """On JAX, dispatch each model call on the calling thread. By default JAX's CPU client hands every
    computation larger than a few flops to a thread of its own, which the caller then waits for: one more
    thread to wake per call while the other worker and the load are queued for the same two cores. It
    must be set before JAX makes its client, which happens when the first model is built; jax reads no
    environment variable for it."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_cpu_enable_async_dispatch", False)


def _read_keras_model(path):
    """The model scripts/train.py saved (a Sequential in a .h5 file), built from its saved configuration
    with zeros made on the host for initial values, then given its saved weights. keras.models.load_model
    draws random initial values first, only for the file's weights to replace them, and on JAX each kernel
    shape compiles its own random-number program: about 4 of a worker's 5 s start-up on a 2-core machine.
    Keras's own Zeros compiles a program per shape too (0.7 s a worker)."""
    import keras

    model = keras.Sequential.from_config(_with_zero_initialisers(saved_configuration(path)["config"]))
    model.load_weights(path)
    return model


@lru_cache(maxsize=1)
def _host_zeros():
    """The configuration of an initialiser whose zeros numpy makes and, on JAX, one copy puts on the device:
    nothing to compile. Registered with Keras the first time a model is read."""
    import keras

    @keras.saving.register_keras_serializable(package="digit_recognition")
    class HostZeros(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            zeros = np.zeros(shape, dtype=keras.backend.standardize_dtype(dtype))
            if keras.backend.backend() == "jax":
                import jax

                return jax.device_put(zeros)
            return zeros

    return {"module": None, "class_name": HostZeros.__name__, "config": {},
            "registered_name": keras.saving.get_registered_name(HostZeros)}


def _with_zero_initialisers(config):
    """A copy of a Keras configuration with every `*_initializer` replaced by the host's zeros."""
    if isinstance(config, list):
        return [_with_zero_initialisers(item) for item in config]
    if not isinstance(config, dict):
        return config
    return {key: _host_zeros() if key.endswith("_initializer") and value is not None
            else _with_zero_initialisers(value) for key, value in config.items()}


@lru_cache(maxsize=4)
def _forward(model):
    """The model's inference as one compiled call: on JAX a jitted function of the pixels, which skips the
    per-call bookkeeping of predict_on_batch; elsewhere predict_on_batch itself. The model is the network
    that scripts/train.py saves, then softmax(logits * scale) (the line reader's: a plain softmax, scale 1):
    on JAX the network's weights and the scale are the compiled program's arguments, so that the classifier
    and the reader, one network with two sets of weights, share one program per batch size (each ~5 MB a
    worker)."""
    import keras

    if keras.backend.backend() != "jax":
        return model.predict_on_batch
    network, scale = model.layers[0], float(getattr(model.layers[1], "scale", 1.0))
    weights = ([variable.value for variable in network.trainable_variables],
               [variable.value for variable in network.non_trainable_variables])
    program = _program(network)
    return lambda pixels: program(*weights, scale, pixels)


_PROGRAMS = {}  # architecture -> its jitted inference, whatever the weights


def _program(network):
    """The jitted softmax(network(pixels) * scale) for every network of this one's architecture."""
    import jax

    architecture = _architecture(network)
    if architecture not in _PROGRAMS:
        _PROGRAMS[architecture] = jax.jit(lambda trainable, non_trainable, scale, pixels: jax.nn.softmax(
            network.stateless_call(trainable, non_trainable, pixels, training=False)[0] * scale))
    return _PROGRAMS[architecture]


def _architecture(network):
    """What decides a network's computation besides its weights: each layer's class, its weights' shapes and
    its plain settings (strides, padding, pool size, rate...). Not get_config, which imports enough of Keras's
    serialisation to cost a worker hundreds of MB."""
    return tuple((type(layer).__name__, tuple(tuple(weight.shape) for weight in layer.weights),
                  repr(sorted((key, value) for key, value in vars(layer).items() if not key.startswith("_")
                              and key != "name" and isinstance(value, (bool, int, float, str, tuple)))))
                 for layer in network.layers)


def _predict_padded(model, pixels):
    """One compiled model call, the batch padded with blank digits to a size compiled at start-up."""
    count = len(pixels)
    size = next(size for size in BATCH_SIZES if size >= count)
    if size > count:
        pixels = np.concatenate([pixels, np.zeros((size - count, *pixels.shape[1:]), dtype=pixels.dtype)])
    return np.asarray(_forward(model)(pixels))[:count]


@lru_cache(maxsize=2)
def _load_line_reader(path, sha256):
    """The line reader, its programs compiled for each of LINE_WIDTHS, so that no request waits."""
    model = _loadable_model(path)
    for width in LINE_WIDTHS:
        _forward(model)(np.zeros((1, LINE_HEIGHT, width, 1), dtype=np.float32))
    return model
