"""The model card (model/model.json) and its picture (model/confusion.png), written by train.py only."""

import hashlib
import json
import os
import platform
import sys
from importlib.metadata import version

import numpy as np

INPUT_CONVENTION = {
    "shape": [None, 28, 28, 1],
    "dtype": "float32",
    "range": [0.0, 1.0],
    "polarity": "light ink (1.0) on a dark background (0.0), as MNIST",
    "framing": "longest side of the ink scaled to 20 px, centre of mass at the centre of the 28x28 frame",
    "made_by": "app.preprocessing.to_model_input(app.preprocessing.frame_digit(ink))",
}
LIBRARIES = ("keras", "tensorflow-cpu", "numpy", "h5py", "pillow")


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def multiply_adds(model):
    """Multiply-adds for one image, counted over the convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, height, width, channels = layer.output.shape
            kernel_height, kernel_width, inputs, _ = layer.kernel.shape
            total += height * width * channels * kernel_height * kernel_width * inputs
        elif kind == "Dense":
            total += int(np.prod(layer.kernel.shape))
    return int(total)


def machine():
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(), "python": sys.version.split()[0]}


def library_versions():
    return {name: version(name) for name in LIBRARIES}


def confusion_matrix(labels, predicted):
    matrix = np.zeros((10, 10), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def write_card(path, card):
    path.write_text(json.dumps(card, indent=2) + "\n")


def draw_card_picture(path, matrix, history, title):
    """The confusion matrix beside the training curves, for the README."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.6), dpi=100)
    shown = np.where(np.eye(10, dtype=bool), 0, matrix)
    left.imshow(shown, cmap="Reds")
    for true in range(10):
        for guess in range(10):
            left.text(guess, true, matrix[true, guess], ha="center", va="center", fontsize=7,
                      color="black" if true != guess else "green")
    left.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
             title="MNIST test: confusion (errors shaded)")
    epochs = np.arange(1, len(history["accuracy"]) + 1)
    right.plot(epochs, 1 - np.asarray(history["accuracy"]), label="train error (augmented)")
    right.plot(epochs, 1 - np.asarray(history["val_accuracy"]), label="validation error")
    right.set(yscale="log", xlabel="epoch", ylabel="error rate", title="training curves")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
