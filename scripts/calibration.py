"""Temperature scaling (Guo et al., 2017): one scalar T so that softmax(logits / T) is calibrated."""

import numpy as np


def softmax(logits, temperature=1.0):
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits, labels, temperature):
    probabilities = softmax(logits, temperature)
    return -np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12))


def fit_temperature(logits, labels):
    """The T in [0.05, 20] that minimises the validation NLL: a log-spaced grid, then a finer one."""
    grid = np.geomspace(0.05, 20, 241)
    for _ in range(2):
        losses = [negative_log_likelihood(logits, labels, t) for t in grid]
        best = int(np.argmin(losses))
        grid = np.geomspace(grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)], 101)
    return float(grid[int(np.argmin([negative_log_likelihood(logits, labels, t) for t in grid]))])


def expected_calibration_error(probabilities, labels, bins=15):
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    return error_of_bins(calibration_bins(probabilities, labels, bins))


def calibration_bins(probabilities, labels, bins=15):
    """[pictures, sum of confidences, pictures read right] in each equal-width confidence bin: what ECE is
    computed from, and what adds up across sets measured apart."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True), 0, bins - 1)
    return [[int(np.sum(which == b)), float(confidence[which == b].sum()), int(correct[which == b].sum())]
            for b in range(bins)]


def error_of_bins(bins):
    """The ECE of calibration_bins, or of several sets' bins added up."""
    total = sum(count for count, _, _ in bins)
    return float(sum(abs(confidence - right) for _, confidence, right in bins) / max(total, 1))


def fit_refusal_threshold(probabilities, labels, digit_refusals):
    """The lowest threshold on the refusal classes' probability (columns 10 on) that refuses at most a
    `digit_refusals` share of the digits (labels 0-9) read right: every other picture refused as readily as
    the digits allow. Never under 0.5: a picture is not refused while it is likelier a digit than not."""
    refusal = probabilities[:, 10:].sum(axis=1)
    read_right = (labels < 10) & (probabilities[:, :10].argmax(axis=1) == labels)
    return float(max(np.nextafter(np.quantile(refusal[read_right], 1 - digit_refusals), 1), 0.5))
