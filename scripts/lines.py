"""Lines of handwriting to train the line reader on: numbers written with the marks people put in them.

A line is written from a text ("3.50", "12/06", "-7", "555 0123", or "" for ink that is no number) and a pool
of digit pictures of many hands (MNIST's training digits, digits drawn in the handwriting fonts, the pen paths
of scripts/pendigits_data.py): each digit scaled to the line's height, a little taller or shorter, wider or
narrower, on a drifting baseline, with gaps from overlapping to wide and a wider one where the text has a
space, the last digits now and then small and raised as a cheque's cents; the marks drawn as a pen draws
them, from fine to bold (a dot, a comma's tail, a dash, sometimes doubled as cheques close an amount, a slash,
a colon). The whole line is slanted and tilted, and sometimes underlined, ruled, boxed, printed over with a cheque's
texture, blurred or made grainy as scans and photos are. Ink that is no number (a lone dash, a row of dashes, a
stroke, a letter, a doodle) is a line whose text is empty. Every picture is a float ink map (1.0 = ink), as
app/preprocessing.py's ink_map makes of an upload.
"""

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from app.line_reader import ALPHABET
from scripts import glyphs, handwriting

MAX_TEXT = 20  # characters of a line's text at most
HEIGHT = 40  # a digit's height, in the working pixels lines are drawn in


def text_of(rng, max_digits=12):
    """A random text of a number as people write one, or "" (ink that is no number) one time in ten."""
    kind = rng.choice(["digits", "decimal", "thousands", "date", "time", "minus", "cheque", "groups", "none"],
                      p=[0.42, 0.1, 0.08, 0.07, 0.05, 0.05, 0.05, 0.08, 0.1])

    def digits(low, high):
        return "".join(str(digit) for digit in rng.integers(10, size=int(rng.integers(low, high + 1))))

    if kind == "digits":  # one digit alone a fifth of the time: the commonest upload
        return digits(1, 1 if rng.random() < 0.2 else max_digits)
    if kind == "decimal":
        return digits(1, 5) + rng.choice([".", ","]) + digits(1, 2)
    if kind == "thousands":
        separator = rng.choice([",", ".", " "])
        text = digits(1, 3) + "".join(separator + digits(3, 3) for _ in range(int(rng.integers(1, 3))))
        return text + ({",": ".", ".": ",", " ": ","}[separator] + digits(2, 2) if rng.random() < 0.3 else "")
    if kind == "date":
        separator = rng.choice(["/", "/", ".", "-"])
        return separator.join([digits(1, 2), digits(1, 2)] + ([digits(2, 4)] if rng.random() < 0.5 else []))
    if kind == "time":
        return digits(1, 2) + ":" + digits(2, 2)
    if kind == "minus":
        return "-" + digits(1, 5) + ("." + digits(1, 2) if rng.random() < 0.3 else "")
    if kind == "cheque":  # a Latin American cheque's amount: "5.000-", "12.500.-"
        return digits(1, 3) + "." + digits(3, 3) + rng.choice(["-", ".-", ",-"])
    if kind == "groups":
        return " ".join(digits(2, 4) for _ in range(int(rng.integers(2, 4))))
    return ""


def encoded(text):
    """A text as the line reader's classes (each character's place in ALPHABET, plus one: 0 is CTC's blank),
    padded with 0 to MAX_TEXT."""
    classes = np.zeros(MAX_TEXT, dtype=np.int32)
    classes[: len(text)] = [ALPHABET.index(character) + 1 for character in text]
    return classes


def digit_pool(digits, labels):
    """Digit pictures (uint8, ink high, any size) grouped by digit, for `line`: {digit: [pictures]}."""
    pool = {digit: [] for digit in range(10)}
    for picture, label in zip(digits, labels):
        if np.any(picture):
            pool[int(label)].append(glyphs._cropped(np.asarray(picture)))
    return pool


def line(text, pool, rng, no_number=()):
    """The ink map (float32, 1.0 = ink) of `text` written with digits of `pool` ({digit: [uint8 pictures]});
    an empty text is drawn as one of `no_number` (uint8 pictures of letters, doodles, scribbles) or as dashes
    and strokes."""
    height = HEIGHT * rng.uniform(0.9, 1.1)
    pen = max(2.0, height * rng.uniform(0.07, 0.16))
    gap = rng.uniform(-0.15, 0.45)
    width_factor = rng.choice([1.0, 1.0, 1.0, rng.uniform(1.2, 1.8), rng.uniform(0.65, 0.9)])
    canvas = Image.new("L", (int(height * (2 + 3 * max(len(text), 3))), int(height * 3)), 0)  # room for the widest
    baseline = height * 2
    x = height * 0.5
    if not text:
        _no_number(canvas, rng, no_number, height, pen, baseline)
    previous = None
    places = [index for index, character in enumerate(text) if character.isdigit()]
    small_from = len(text)  # digits from here on are written small and raised, as a cheque's cents often are
    if len(places) >= 2 and rng.random() < 0.12:
        small_from = int(rng.choice(places[1:]))
    small = rng.uniform(0.5, 0.8)
    for index, character in enumerate(text):
        drift = rng.normal(0, 0.04) * height
        if character == " ":
            x += height * rng.uniform(0.8, 1.5)
            previous = None
            continue
        if previous is not None:
            x += height * ((gap + rng.uniform(-0.08, 0.08)) if previous.isdigit() and character.isdigit()
                           else rng.uniform(0.05, 0.3))
        if character.isdigit() and index >= small_from:
            raised = baseline + drift - height * (1 - small) * rng.uniform(0.4, 1.0)
            x = _paste_digit(canvas, pool, int(character), x, raised, height * small, width_factor, rng)
        elif character.isdigit():
            x = _paste_digit(canvas, pool, int(character), x, baseline + drift, height, width_factor, rng)
        else:
            x = _draw_mark(canvas, character, x, baseline + drift, height, pen, rng, index == len(text) - 1)
        previous = character
    ink = np.asarray(canvas, dtype=np.float32) / 255
    return _as_scanned(_slanted(ink, rng), rng, height, pen)


def _paste_digit(canvas, pool, digit, x, baseline, height, width_factor, rng):
    """One of `pool`'s pictures of `digit`, its bottom on `baseline`, its left at `x`; returns its right edge."""
    pictures = pool[digit]
    picture = Image.fromarray(pictures[int(rng.integers(len(pictures)))])
    tall = height * rng.uniform(0.88, 1.08)
    wide = picture.width * tall / picture.height * width_factor * rng.uniform(0.92, 1.08)
    picture = picture.resize((max(1, round(wide)), max(1, round(tall))), Image.Resampling.BILINEAR)
    top = round(baseline - picture.height)
    region = (round(x), top, round(x) + picture.width, top + picture.height)
    canvas.paste(Image.fromarray(np.maximum(np.asarray(canvas.crop(region)), np.asarray(picture))), region[:2])
    return x + picture.width


def _draw_mark(canvas, mark, x, baseline, height, pen, rng, closing=True):
    """`mark` drawn as a pen draws it, its left at `x`; returns its right edge. A dash that `closing` a line is
    sometimes doubled."""
    draw = ImageDraw.Draw(canvas)

    def dot(cx, cy):
        radius = pen * rng.uniform(0.4, 0.7)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        return radius

    if mark == ".":
        return x + 2 * dot(x + pen, baseline - pen * 0.6)
    if mark == ",":
        radius = dot(x + pen, baseline - pen * 0.6)
        tail = height * rng.uniform(0.15, 0.3)
        glyphs.pen_line(draw, [(x + pen + radius * 0.6, baseline - pen * 0.6),
                               (x + pen - tail * 0.4, baseline + tail)], max(2, round(pen * 0.8)))
        return x + 2 * radius + pen * 0.3
    if mark == "-":
        length, level = height * rng.uniform(0.25, 0.55), baseline - height * rng.uniform(0.4, 0.6)
        tilt = length * rng.uniform(-0.1, 0.1)
        glyphs.pen_line(draw, [(x, level + tilt), (x + length, level - tilt)], round(pen))
        if closing and rng.random() < 0.15:  # doubled, as a cheque's amount is often closed: "5.000="
            below = level + max(pen * 1.5, height * rng.uniform(0.15, 0.25))
            glyphs.pen_line(draw, [(x, below + tilt), (x + length, below - tilt)], round(pen))
        return x + length
    if mark == "/":
        lean = height * rng.uniform(0.3, 0.6)
        glyphs.pen_line(draw, [(x, baseline + height * 0.05), (x + lean, baseline - height * 1.05)], round(pen))
        return x + lean
    if mark == ":":
        radius = dot(x + pen, baseline - height * rng.uniform(0.05, 0.2))
        dot(x + pen + rng.uniform(-0.1, 0.1) * height, baseline - height * rng.uniform(0.55, 0.75))
        return x + 2 * radius
    raise ValueError(f"no way to draw {mark!r}")


def _no_number(canvas, rng, no_number, height, pen, baseline):
    """Ink that is no number: a lone dash, a row of dashes, a long stroke, a dot, or pictures of `no_number`."""
    draw = ImageDraw.Draw(canvas)
    choice = rng.integers(4 if len(no_number) else 3)
    if choice == 0:  # dashes
        x = height * 0.5
        for _ in range(int(rng.choice([1, 1, 2, 3, 5, 8]))):
            x = _draw_mark(canvas, "-", x, baseline, height, pen, rng) + height * rng.uniform(0.1, 0.4)
    elif choice == 1:  # a long stroke, straight or wavy
        length = height * rng.uniform(1, 5)
        points = [(height * 0.5 + length * t, baseline - height * (0.5 + rng.uniform(-0.1, 0.1) * np.sin(7 * t)))
                  for t in np.linspace(0, 1, 12)]
        glyphs.pen_line(draw, points, round(pen))
    elif choice == 2:  # a dot alone (not a slash: a slash alone is a 1 as much as anything)
        _draw_mark(canvas, ".", height * 0.5, baseline, height, pen, rng)
    else:
        x = height * 0.5
        for _ in range(int(rng.integers(1, 4))):
            picture = Image.fromarray(no_number[int(rng.integers(len(no_number)))])
            tall = height * rng.uniform(0.8, 1.2)
            picture = picture.resize((max(1, round(picture.width * tall / picture.height)), max(1, round(tall))))
            if x + picture.width >= canvas.width:
                break
            canvas.paste(picture, (round(x), round(baseline - tall)), picture)
            x += picture.width + height * rng.uniform(0.1, 0.4)


def _slanted(ink, rng):
    """The line sheared (slant) and tilted a little, cropped to its ink."""
    shear, angle = rng.uniform(-0.3, 0.2), rng.uniform(-3, 3)
    pixels = np.asarray(handwriting.slanted(Image.fromarray(ink), shear, angle), dtype=np.float32)
    rows, cols = np.flatnonzero(pixels.max(axis=1) > 0.05), np.flatnonzero(pixels.max(axis=0) > 0.05)
    if rows.size == 0:
        return pixels
    return pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _as_scanned(ink, rng, height, pen):
    """`ink` with what a page adds, each now and then: a margin, an underline, ruled lines or a box, a cheque's
    printed texture, blur, and grain."""
    margin = [int(m) for m in rng.integers(2, int(height * 0.6), size=4)]  # top, bottom, left, right
    ink = np.pad(ink, ((margin[0], margin[1]), (margin[2], margin[3])))
    rows, cols = ink.shape
    lines = np.zeros_like(ink)
    strength = rng.uniform(0.3, 1.0)
    if rng.random() < 0.12:  # an underline, drawn by hand
        level = rows - margin[1] + rng.uniform(-0.05, 0.15) * height
        y = np.clip(level + np.cumsum(rng.normal(0, 0.3, cols)), 0, rows - 1).astype(int)
        thick = max(1, int(pen * rng.uniform(0.4, 1.0)))
        for offset in range(thick):
            lines[np.clip(y + offset, 0, rows - 1), np.arange(cols)] = 1
    if rng.random() < 0.1:  # a printed box round the amount, or ruled lines
        thick = int(rng.integers(1, 3))
        lines[:thick], lines[-thick:] = strength, strength
        if rng.random() < 0.5:
            lines[:, :thick], lines[:, -thick:] = strength, strength
    ink = np.maximum(ink, lines)
    if rng.random() < 0.12:
        ink = np.maximum(ink, _printed_texture(ink.shape, rng))
    if rng.random() < 0.25:
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        ink = np.clip(ink + rng.normal(0, rng.uniform(0.02, 0.12), ink.shape), 0, 1)
    return ink.astype(np.float32)


def _printed_texture(shape, rng):
    """A cheque's security print as its scan's ink map shows it: fine parallel lines a few pixels apart, straight
    or wavy, one way or crossed, from faint to as dark as the pen."""
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    texture = np.zeros(shape, dtype=np.float32)
    for _ in range(int(rng.integers(1, 3))):
        angle = rng.uniform(0, np.pi)
        spacing = rng.uniform(2.5, 7.0)
        wavy = rng.random() < 0.4
        wave = rng.uniform(0, 3) * np.sin(x / rng.uniform(8, 30) + rng.uniform(0, 2 * np.pi)) if wavy else 0
        phase = (x * np.cos(angle) + y * np.sin(angle) + wave) / spacing
        across = np.abs(phase - np.round(phase)) * spacing  # pixels from the nearest line
        texture = np.maximum(texture, np.clip(1 - across / rng.uniform(0.6, 1.4), 0, 1) * rng.uniform(0.2, 0.9))
    return texture
