"""Train the line reader: a CNN with a CTC output that reads a whole line of handwriting, its digits and the marks
people write in numbers, from lines that scripts/lines.py writes; write it and its card (lines.json) beside
--output.

    python scripts/train_lines.py           # about 30 minutes on 2 CPU cores
    python scripts/train_lines.py --quick   # a few hundred lines, one epoch, for tests

Data, model, train, evaluate, write. The digits of the training lines are MNIST's training digits (and their 1s
and 7s written the continental way), digits drawn in the handwriting fonts, the UCI optical digits and the pen
paths of 44 writers (scripts/train.py's sources); the ink that is no number, letters of the fonts and of other
alphabets, doodles, dashes and strokes. The validation lines are written with the 5,000 MNIST training digits
that scripts/train.py holds out, the test lines with MNIST's test digits.
"""

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import app and scripts
if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from app.line_reader import ALPHABET, STEP, greedy_reading, text_of  # noqa: E402
from app.predictor import NOT_A_DIGIT  # noqa: E402
from app.preprocessing import LINE_HEIGHT, LINE_WIDTHS, frame_digits, frame_line, padded_lines  # noqa: E402
from scripts import handwriting_data, lines, model_card  # noqa: E402
from scripts import train as classifier_recipe  # noqa: E402
from scripts.mnist_data import DEFAULT_CACHE, VALIDATION_SIZE, DataError, load_mnist  # noqa: E402
from scripts.optdigits_data import load_optdigits_training  # noqa: E402
from scripts.pendigits_data import load_pendigits  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "model"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--lines", type=int, default=100_000, help="training lines (%(default)s)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--font-digits", type=int, default=12_000, help="digits drawn in the fonts, for the lines")
    parser.add_argument("--pen-digits", type=int, default=8_000, help="digits drawn from pen paths, for the lines")
    parser.add_argument("--continental-digits", type=int, default=4_000,
                        help="MNIST 1s and 7s written the continental way, for the lines")
    parser.add_argument("--no-number", type=int, default=12_000,
                        help="letters and doodles to write lines of ink that is no number with")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=MODEL_DIR / "lines.h5")
    parser.add_argument("--quick", action="store_true", help="600 lines, a few hundred of each source, one epoch")
    return parser.parse_args(argv)


def build_line_reader():
    """A CNN over a line LINE_HEIGHT px tall and any width, STEP columns per output step, each step's logits for
    CTC's blank and each character of ALPHABET: about 80 million multiply-adds per 128 columns."""
    import keras
    from keras import layers

    def conv(count):
        return [layers.Conv2D(count, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU()]

    return keras.Sequential([
        keras.Input((LINE_HEIGHT, None, 1)),
        *conv(32), layers.MaxPooling2D(2),
        *conv(48), *conv(48), layers.MaxPooling2D(2),
        *conv(96), *conv(96), layers.MaxPooling2D((2, 1)), layers.Dropout(0.1),
        layers.ZeroPadding2D(((0, 0), (1, 1))), layers.Conv2D(160, (LINE_HEIGHT // 8, 3), use_bias=False),
        layers.BatchNormalization(), layers.ReLU(),  # the column's whole height: one step per STEP columns
        layers.Reshape((-1, 160)),
        layers.Conv1D(160, 5, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.Dropout(0.2),
        layers.Dense(len(ALPHABET) + 1),
    ], name="line_reader")


def line_pictures(count, seed, pool, no_number):
    """`count` lines written from random texts: each framed line's columns stacked (width, LINE_HEIGHT), each
    line's width, and its encoded text."""
    rng = np.random.default_rng(seed)
    framed, texts = [], []
    for _ in range(count):
        text = lines.text_of(rng)
        framed.append(frame_line(lines.line(text, pool, rng, no_number)))
        texts.append(lines.encoded(text))
    return (np.concatenate([line.T for line in framed]), np.array([line.shape[1] for line in framed]),
            np.stack(texts))


def unstacked(columns, widths):
    """The lines that line_pictures stacked, each (LINE_HEIGHT, width)."""
    ends = np.cumsum(widths)
    return [np.ascontiguousarray(columns[end - width : end].T) for end, width in zip(ends, widths)]


def readable(framed, texts):
    """Whether CTC can align each text with its line: two steps per character at least (a blank between
    repeats), so that no line teaches an impossible reading."""
    lengths = np.sum(texts > 0, axis=1)
    return np.array([line.shape[1] // STEP >= 2 * length for line, length in zip(framed, lengths)])


def batch_members(buckets, batch_size, rng):
    """One epoch's batches as the indices of their lines: each batch of lines of one bucket (one width in
    LINE_WIDTHS, so few shapes are compiled), in shuffled order."""
    chosen = []
    for width in range(len(LINE_WIDTHS)):
        members = rng.permutation(np.flatnonzero(buckets == width))
        chosen += [members[start : start + batch_size] for start in range(0, len(members), batch_size)]
    return [chosen[index] for index in rng.permutation(len(chosen))]


def batches(framed, texts, buckets, batch_size, rng):
    """Every epoch's batches of lines and texts, one epoch after another."""
    while True:
        for batch in batch_members(buckets, batch_size, rng):
            yield padded_lines([framed[i] for i in batch]), texts[batch]


def read_texts(model, framed, batch_size=64):
    """The text the model reads in each framed line."""
    texts = []
    for start in range(0, len(framed), batch_size):
        part = framed[start : start + batch_size]
        probabilities = model.predict(padded_lines(part), verbose=0)
        texts += [text_of(greedy_reading(rows)) for rows in probabilities]
    return texts


def exactly_read(read, texts):
    """The share of lines whose text, and of lines whose digits, were read exactly; by kind of line."""
    wanted = ["".join(ALPHABET[c - 1] for c in row if c) for row in texts]
    wanted = [" ".join(text.split()) for text in wanted]
    right = np.array([a == b for a, b in zip(read, wanted)])
    digits = np.array([[c for c in a if c.isdigit()] == [c for c in b if c.isdigit()] for a, b in zip(read, wanted)])
    kinds = np.array(["no number" if not text else "marks" if any(not c.isdigit() for c in text) else "digits"
                      for text in wanted])
    return {"lines": len(wanted), "text": float(right.mean()), "digits": float(digits.mean()),
            **{f"text_{kind.replace(' ', '_')}": float(right[kinds == kind].mean()) for kind in sorted(set(kinds))}}


def main(argv=None):
    args = parse_args(argv)
    try:
        data = load_mnist(None, args.cache_dir)
        uci = load_optdigits_training(args.cache_dir)
        pens = load_pendigits(args.cache_dir)
        fonts = [handwriting_data.font_files(evaluation, args.cache_dir) for evaluation in (False, True)]
        alphabets = classifier_recipe.letters_by_alphabet(handwriting_data.alphabet_fonts(False, args.cache_dir))
        doodles, _ = handwriting_data.load_quickdraw(args.cache_dir)
    except DataError as error:
        print(f"train_lines.py: {error}", file=sys.stderr)
        return 2
    counts = {"lines": args.lines, "font_digits": args.font_digits, "pen_digits": args.pen_digits,
              "continental": args.continental_digits, "no_number": args.no_number}
    if args.quick:
        args.epochs = 1
        counts = {"lines": 600, "font_digits": 200, "pen_digits": 200, "continental": 100, "no_number": 200}
    rng = np.random.default_rng(args.seed)
    started = time.time()

    # Data: the digits the lines are written with, each split its own, and the ink that is no number.
    digits, labels = data.x_train[:-VALIDATION_SIZE], data.y_train[:-VALIDATION_SIZE]
    drawn, drawn_classes, _ = classifier_recipe.in_parallel(
        classifier_recipe.handwriting_pictures, (counts["font_digits"], counts["no_number"] // 2, 0,
                                                 counts["no_number"] // 2, counts["continental"]),
        args.seed + 10, fonts[0], alphabets, digits, labels)
    pen_digits, pen_labels = classifier_recipe.pen_pictures(pens, counts["pen_digits"], digits, labels, rng)
    uci_digits, uci_labels = classifier_recipe.uci_pictures((uci.images, uci.labels), 1, rng)
    is_digit = drawn_classes < 10
    pool = lines.digit_pool(np.concatenate([digits, drawn[is_digit], pen_digits, uci_digits]),
                            np.concatenate([labels, drawn_classes[is_digit], pen_labels, uci_labels]))
    no_number = list(drawn[drawn_classes == NOT_A_DIGIT])
    no_number += list(frame_digits(doodles[rng.permutation(len(doodles))[: counts["no_number"] // 2]]))
    validation_pool = lines.digit_pool(data.x_train[-VALIDATION_SIZE:], data.y_train[-VALIDATION_SIZE:])
    test_pool = lines.digit_pool(data.x_test, data.y_test)
    splits = {}
    for name, count, digit_pool, seed in [("train", counts["lines"], pool, args.seed),
                                          ("validation", max(counts["lines"] // 20, 200), validation_pool, args.seed + 1),
                                          ("test", max(counts["lines"] // 20, 200), test_pool, args.seed + 2)]:
        columns, widths, texts = classifier_recipe.in_parallel(line_pictures, (count,), seed, digit_pool, no_number)
        framed = unstacked(columns, widths)
        kept = readable(framed, texts)
        splits[name] = ([line for line, keep in zip(framed, kept) if keep], texts[kept], int(np.sum(~kept)))
    print(f"lines written in {(time.time() - started) / 60:.1f} min: "
          + ", ".join(f"{name} {len(split[1]):,} ({split[2]} too narrow to align, left out)"
                      for name, split in splits.items()))

    import keras
    import tensorflow as tf
    from keras import layers, ops

    keras.utils.set_random_seed(args.seed)

    class CtcLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            y_true = ops.cast(y_true, "int32")
            steps = ops.full((ops.shape(y_pred)[0],), ops.shape(y_pred)[1], dtype="int32")
            return ops.ctc_loss(y_true, y_pred, ops.sum(ops.cast(y_true > 0, "int32"), axis=1), steps, mask_index=0)

    framed, texts, _ = splits["train"]
    buckets = np.searchsorted(LINE_WIDTHS, [line.shape[1] for line in framed])
    batch_rng = np.random.default_rng(args.seed + 3)
    per_epoch = len(batch_members(buckets, args.batch_size, np.random.default_rng(0)))
    dataset = tf.data.Dataset.from_generator(
        lambda: batches(framed, texts, buckets, args.batch_size, batch_rng),
        output_signature=(tf.TensorSpec((None, LINE_HEIGHT, None, 1), tf.float32),
                          tf.TensorSpec((None, lines.MAX_TEXT), tf.int32))).prefetch(2)

    # Model: warm-up over a tenth of the run, then cosine decay.
    model = build_line_reader()
    steps = args.epochs * per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate / 10, decay_steps=steps - steps // 10,
                                                      warmup_target=args.learning_rate, warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule, clipnorm=5.0), loss=CtcLoss())
    training_started = time.time()
    model.fit(dataset, epochs=args.epochs, steps_per_epoch=per_epoch, verbose=1)
    training_seconds = time.time() - training_started

    shipped = keras.Sequential([model, layers.Softmax()], name="line_reader_probabilities")
    measured = {name: exactly_read(read_texts(shipped, split[0]), split[1])
                for name, split in splits.items() if name != "train"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    shipped.save(args.output)
    card = {
        "file": args.output.name,
        "sha256": model_card.sha256_of(args.output),
        "trained_at": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
        "quick": args.quick,
        "alphabet": ALPHABET,
        "lines": {name: len(split[1]) for name, split in splits.items()},
        "digit_pool": {str(digit): len(pictures) for digit, pictures in pool.items()},
        "no_number_pool": len(no_number),
        "read_exactly": measured,
        "parameters": int(model.count_params()),
        "training_seconds": round(training_seconds, 1),
        "hyperparameters": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
                            if key not in ("cache_dir", "output", "quick")},
        "machine": model_card.machine(),
    }
    model_card.write_card(args.output.with_name("lines.json"), card)
    print(json.dumps(measured, indent=1))
    print(f"trained in {training_seconds / 60:.1f} min; wrote {args.output} and lines.json beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
