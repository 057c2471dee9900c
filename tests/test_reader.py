"""The reader: candidates cut out of touching digits, labelled by whose ink they hold, and read better by the
reader that learned them than by the classifier, on MNIST test digits that training never saw."""

import numpy as np
import pytest

from app.predictor import NOT_A_DIGIT, SEVERAL_DIGITS
from scripts import candidates, mnist_data


def two_touching_digits():
    """Two 'digits' as layers, a 20-column block each, overlapping by two columns."""
    layers = np.zeros((2, 30, 40), dtype=np.uint8)
    layers[0, 5:25, 0:20] = 255
    layers[1, 5:25, 18:38] = 255
    return layers


@pytest.mark.parametrize("box, expected", [
    ((0, 5, 20, 20), 7),  # the first digit, with two columns of its neighbour under it
    ((0, 5, 26, 20), 7),  # ... and with a third of its neighbour: a digit that overlaps its neighbour, read whole
    ((18, 5, 20, 20), 3),
    ((0, 5, 38, 20), SEVERAL_DIGITS),
    ((0, 5, 10, 20), NOT_A_DIGIT),  # half of the first
    ((8, 5, 20, 20), NOT_A_DIGIT),  # the halves of two digits
    ((0, 5, 16, 20), None),  # most of the first but not all: no clear answer, not trained on
])
def test_a_candidate_is_labelled_by_whose_ink_it_holds(box, expected):
    assert candidates.label(two_touching_digits(), np.array([7, 3]), box) == expected


def test_the_reader_reads_candidates_cut_from_touching_test_digits_far_better_than_the_classifier(app):
    mnist = mnist_data.load_mnist()
    pictures, classes = candidates.candidates(mnist.x_test, mnist.y_test, 150, np.random.default_rng(0))
    assert {*range(10), NOT_A_DIGIT, SEVERAL_DIGITS} <= set(classes.tolist())
    predictor = app.extensions["predictor"]
    reader = np.mean(predictor.read_pieces(pictures).argmax(axis=1) == classes)
    classifier = np.mean(predictor.classify(pictures).argmax(axis=1) == classes)
    assert reader >= 0.8 and reader >= classifier + 0.15, (reader, classifier)
