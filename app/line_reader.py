"""What the line reader's outputs say: the text of a line, each character with the columns it was read at.

The line reader (scripts/train_lines.py) reads a line of ink (app/preprocessing.frame_line) as a sequence of
steps, one every STEP columns, each with the probabilities of CTC's blank (class 0) and of the characters of
ALPHABET. A greedy reading takes each step's likeliest class, merges repeats and drops blanks; a character's
steps are where it was read, so its place in the line.
"""

from dataclasses import dataclass

import numpy as np

ALPHABET = "0123456789.,-/: "  # the reader's classes after the blank: the digits, then the marks in numbers
STEP = 4  # columns of the framed line per step of the reader's output


@dataclass
class Character:
    text: str
    steps: tuple  # the first and one past the last step it was read at
    confidence: float  # the likeliest probability of it over its steps


def greedy_reading(probabilities):
    """The characters read from one line's probabilities (steps, 1 + len(ALPHABET)), in reading order."""
    best = np.asarray(probabilities).argmax(axis=1)
    characters, previous = [], 0
    for step, kind in enumerate(best.tolist()):
        if kind and kind == previous:
            characters[-1].steps = (characters[-1].steps[0], step + 1)
            characters[-1].confidence = max(characters[-1].confidence, float(probabilities[step, kind]))
        elif kind:
            characters.append(Character(ALPHABET[kind - 1], (step, step + 1), float(probabilities[step, kind])))
        previous = kind
    return characters


def text_of(characters):
    """The text the characters spell, spaces between groups kept single and none at either end."""
    return " ".join("".join(character.text for character in characters).split())
