"""Ink pictures of what people write besides one digit: numbers made of MNIST digits, and letters,
symbols, shapes and scribbles that are no digit at all.

Training uses them to teach the model to refuse (train.py), the evaluation set to measure the
refusal and the reading of numbers (make_eval_set.py). Every picture is a uint8 array, ink high
(255) on 0, as MNIST is. Nothing a person would read as a digit is drawn as a non-digit: no O, o,
I, l, S, Z, B, b, g, q or their like, no plain circle, square or line.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Letters and symbols drawn from the machine's fonts. Left out, as a person could read them as digits:
# O o Q D C c U u a d (0), I l i j J ! | / ( ) [ ] (1), Z z (2), S s $ (5), G b (6), T (7), B (8), g q y (9).
FONT_CHARACTERS = ("AEFHKLMNPRVWXY" "efhkmnprtvwx" "+=#%&@?*<>~^×÷≠√∞€£¥πΣΩλЖФЯШДЮ✓★♥→")
FONT_DIRECTORIES = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Families kept for evaluation only, so that the refusal is measured on typefaces training never saw
EVALUATION_FAMILIES = ("Mono", "Condensed", "Liberation")


def font_files(evaluation):
    """The machine's TrueType fonts for training (evaluation=False) or for evaluation only (True)."""
    files = sorted(path for directory in FONT_DIRECTORIES if directory.is_dir()
                   for path in directory.rglob("*.ttf") if "Math" not in path.name)
    return [path for path in files if any(family in path.name for family in EVALUATION_FAMILIES) == evaluation]


def _font(files, rng, size):
    """A random font of `files` at `size`, or Pillow's own font where the machine has none."""
    if not files:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(files[int(rng.integers(len(files)))]), size)


# Stroke drawings in a unit box (y downwards), each a list of polylines, as a hand draws them.
def _arc(cx, cy, rx, ry, start, end, points=24):
    angles = np.linspace(np.radians(start), np.radians(end), points)
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


STROKE_DRAWINGS = {
    "A": [[(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)], [(0.22, 0.6), (0.78, 0.6)]],
    "E": [[(0.9, 0.0), (0.1, 0.0), (0.1, 1.0), (0.9, 1.0)], [(0.1, 0.5), (0.7, 0.5)]],
    "F": [[(0.9, 0.0), (0.1, 0.0), (0.1, 1.0)], [(0.1, 0.48), (0.7, 0.48)]],
    "H": [[(0.1, 0.0), (0.1, 1.0)], [(0.9, 0.0), (0.9, 1.0)], [(0.1, 0.5), (0.9, 0.5)]],
    "K": [[(0.15, 0.0), (0.15, 1.0)], [(0.85, 0.0), (0.15, 0.55)], [(0.35, 0.42), (0.9, 1.0)]],
    "M": [[(0.0, 1.0), (0.1, 0.0), (0.5, 0.6), (0.9, 0.0), (1.0, 1.0)]],
    "N": [[(0.1, 1.0), (0.1, 0.0), (0.9, 1.0), (0.9, 0.0)]],
    "R": [[(0.15, 1.0), (0.15, 0.0), *_arc(0.45, 0.25, 0.4, 0.25, -90, 90), (0.15, 0.5), (0.9, 1.0)]],
    "P": [[(0.15, 1.0), (0.15, 0.0), *_arc(0.45, 0.25, 0.4, 0.25, -90, 90), (0.15, 0.5)]],
    "V": [[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)]],
    "W": [[(0.0, 0.0), (0.25, 1.0), (0.5, 0.35), (0.75, 1.0), (1.0, 0.0)]],
    "X": [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]],
    "Y": [[(0.0, 0.0), (0.5, 0.5), (1.0, 0.0)], [(0.5, 0.5), (0.5, 1.0)]],
    "k": [[(0.2, 0.0), (0.2, 1.0)], [(0.8, 0.4), (0.2, 0.75), (0.85, 1.0)]],
    "h": [[(0.15, 0.0), (0.15, 1.0)], [(0.15, 0.65), *_arc(0.5, 0.7, 0.35, 0.25, 180, 360, 12), (0.85, 1.0)]],
    "m": [[(0.05, 1.0), (0.05, 0.4), *_arc(0.27, 0.5, 0.22, 0.15, 180, 360, 10), (0.5, 1.0)],
          [(0.5, 0.5), *_arc(0.72, 0.5, 0.22, 0.15, 180, 360, 10), (0.95, 1.0)]],
    "e": [[(0.1, 0.55), (0.9, 0.55), *_arc(0.5, 0.55, 0.4, 0.4, 0, -300, 30)]],
    "t": [[(0.5, 0.0), (0.5, 0.85), (0.7, 1.0), (0.9, 0.9)], [(0.15, 0.3), (0.85, 0.3)]],
    "w": [[(0.0, 0.3), (0.25, 1.0), (0.5, 0.5), (0.75, 1.0), (1.0, 0.3)]],
    "plus": [[(0.5, 0.0), (0.5, 1.0)], [(0.0, 0.5), (1.0, 0.5)]],
    "equals": [[(0.0, 0.35), (1.0, 0.35)], [(0.0, 0.65), (1.0, 0.65)]],
    "hash": [[(0.35, 0.0), (0.25, 1.0)], [(0.75, 0.0), (0.65, 1.0)], [(0.0, 0.33), (1.0, 0.33)],
             [(0.0, 0.67), (1.0, 0.67)]],
    "asterisk": [[(0.5, 0.0), (0.5, 1.0)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "less": [[(0.9, 0.0), (0.1, 0.5), (0.9, 1.0)]],
    "greater": [[(0.1, 0.0), (0.9, 0.5), (0.1, 1.0)]],
    "question": [[*_arc(0.5, 0.28, 0.4, 0.28, 190, 400, 16), (0.5, 0.72)], [(0.5, 0.92), (0.5, 1.0)]],
    "percent": [_arc(0.2, 0.2, 0.18, 0.18, 0, 360), [(0.9, 0.0), (0.1, 1.0)], _arc(0.8, 0.8, 0.18, 0.18, 0, 360)],
    "arrow": [[(0.0, 0.5), (1.0, 0.5)], [(0.65, 0.15), (1.0, 0.5), (0.65, 0.85)]],
    "check": [[(0.0, 0.55), (0.35, 1.0), (1.0, 0.0)]],
    "triangle": [[(0.5, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.0)]],
    "diamond": [[(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5), (0.5, 0.0)]],
    "house": [[(0.1, 1.0), (0.1, 0.45), (0.5, 0.0), (0.9, 0.45), (0.9, 1.0), (0.1, 1.0)]],
    "star": [[(0.5 + 0.5 * np.sin(np.radians(144 * k)), 0.5 - 0.5 * np.cos(np.radians(144 * k))) for k in range(6)]],
    "heart": [[(0.5, 1.0), *_arc(0.27, 0.3, 0.25, 0.25, 135, 360, 16), *_arc(0.73, 0.3, 0.25, 0.25, 180, 405, 16),
               (0.5, 1.0)]],
    "smiley": [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 40), [(0.33, 0.33), (0.34, 0.38)], [(0.66, 0.33), (0.67, 0.38)],
               _arc(0.5, 0.55, 0.25, 0.2, 20, 160, 12)],
    "sun": [_arc(0.5, 0.5, 0.25, 0.25, 0, 360, 30)]
           + [[(0.5 + 0.32 * np.cos(a), 0.5 + 0.32 * np.sin(a)), (0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a))]
              for a in np.radians(np.arange(0, 360, 45))],
    "target": [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 40), _arc(0.5, 0.5, 0.25, 0.25, 0, 360, 24)],
    "crossed circle": [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 40), [(0.15, 0.15), (0.85, 0.85)], [(0.85, 0.15), (0.15, 0.85)]],
    "envelope": [[(0.0, 0.1), (1.0, 0.1), (1.0, 0.9), (0.0, 0.9), (0.0, 0.1), (0.5, 0.55), (1.0, 0.1)]],
    "stick figure": [_arc(0.5, 0.15, 0.15, 0.15, 0, 360, 20), [(0.5, 0.3), (0.5, 0.7)], [(0.15, 0.45), (0.85, 0.45)],
                     [(0.2, 1.0), (0.5, 0.7), (0.8, 1.0)]],
    "spiral": [[(0.5 + r * np.cos(a) / 2, 0.5 + r * np.sin(a) / 2)
                for a, r in zip(np.linspace(0, 6 * np.pi, 60), np.linspace(0.05, 1.0, 60))]],
}


def _scribble(rng):
    """A scribble: a smoothed random walk through 8-20 points, crossing itself."""
    points = rng.uniform(0, 1, (int(rng.integers(8, 21)), 2))
    for _ in range(2):  # Chaikin's corner cutting: a hand's curves rather than straight jumps
        points = np.concatenate([[points[0]], *[[0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b]
                                               for a, b in zip(points[:-1], points[1:])], [points[-1]]])
    return [[tuple(point) for point in points]]


def _hatching(rng):
    """Parallel strokes, or a grid of them: shading or crossing-out."""
    count = int(rng.integers(4, 9))
    lines = [[(k / (count - 1), 0.0), (k / (count - 1) - 0.3, 1.0)] for k in range(count)]
    if rng.random() < 0.4:
        lines += [[(0.0, k / (count - 1)), (1.0, k / (count - 1))] for k in range(count)]
    return lines


def _zigzag(rng):
    """A zigzag of 5-9 strokes or a wave of 2-3 periods: both longer than any digit."""
    if rng.random() < 0.5:
        count = int(rng.integers(5, 10))
        return [[(k / count, float(k % 2)) for k in range(count + 1)]]
    periods = rng.uniform(2, 3.5)
    x = np.linspace(0, 1, 50)
    return [list(zip(x, 0.5 + 0.5 * np.sin(2 * np.pi * periods * x)))]


GENERATED_DRAWINGS = {"scribble": _scribble, "hatching": _hatching, "zigzag": _zigzag}
NOT_A_DIGIT_KINDS = ("font", "strokes", "generated")  # drawn in turn, in equal numbers


def stroke_drawing(lines, rng, side=112):
    """Polylines in a unit box drawn as a hand would: tilted, sheared, stretched, every point a little off,
    with a pen of random width."""
    angle = np.radians(rng.uniform(-15, 15))
    shear = rng.uniform(-0.2, 0.2)
    stretch = rng.uniform(0.75, 1.33)
    transform = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.array(
        [[stretch, shear], [0, 1 / stretch]])
    width = int(rng.integers(side // 18, side // 7))
    image = Image.new("L", (2 * side, 2 * side), 0)
    pen = ImageDraw.Draw(image)
    for line in lines:
        points = np.asarray(line, dtype=np.float64) - 0.5
        points = points @ transform.T + rng.normal(0, 0.025, points.shape)
        pen_line(pen, [(side + x * side, side + y * side) for x, y in points], width)
    return _cropped(np.asarray(image))


def pen_line(pen, points, width):
    """A polyline through `points` drawn in ink (255) by `pen` (an ImageDraw) as a pen draws it: `width` px
    wide, its joints and both ends round."""
    pen.line(points, fill=255, width=width, joint="curve")
    for x, y in (points[0], points[-1]):
        pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)


def font_glyph(character, font, rng):
    """One character of `font`, tilted a little, as a uint8 ink picture."""
    image = Image.new("L", (4 * font.size, 4 * font.size), 0)
    ImageDraw.Draw(image).text((font.size, font.size), character, fill=255, font=font)
    image = image.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BILINEAR)
    return _cropped(np.asarray(image))


def not_a_digit(rng, fonts, kind):
    """One random picture that is no digit, of `kind` (see NOT_A_DIGIT_KINDS), and what it is."""
    if kind == "font":
        character = FONT_CHARACTERS[int(rng.integers(len(FONT_CHARACTERS)))]
        font = _font(fonts, rng, int(rng.integers(60, 120)))
        name = Path(font.path).stem if isinstance(font.path, str) else "Pillow's own font"
        return font_glyph(character, font, rng), f"the character {character} in {name}"
    if kind == "strokes":
        name = list(STROKE_DRAWINGS)[int(rng.integers(len(STROKE_DRAWINGS)))]
        return stroke_drawing(STROKE_DRAWINGS[name], rng), f"a drawn {name}"
    name = list(GENERATED_DRAWINGS)[int(rng.integers(len(GENERATED_DRAWINGS)))]
    return stroke_drawing(GENERATED_DRAWINGS[name](rng), rng), f"a {name}"


def number(digits, rng, spacing):
    """MNIST digits (28x28 uint8 each) written side by side as one number, and each digit's box (x, y, width,
    height) in the picture. `spacing` is the gap between neighbours as a fraction of a digit's height:
    negative where they overlap. Each digit is a little larger or smaller and higher or lower than the last,
    and the line may slope a little, as handwriting does."""
    layers, boxes = number_layers(digits, rng, spacing)
    return layers.max(axis=0), boxes


def number_layers(digits, rng, spacing):
    """`number`, each digit on a picture of its own (n, height, width): which ink is whose where they touch."""
    pieces = [_written_size(digit, rng) for digit in digits]
    height = max(piece.shape[0] for piece in pieces)
    slope = rng.uniform(-0.08, 0.08)
    boxes, x = [], 0
    for piece in pieces:
        y = int(height * 0.15 + rng.uniform(-0.06, 0.06) * height + slope * x)
        boxes.append((x, y, piece.shape[1], piece.shape[0]))
        x = max(x + piece.shape[1] + int(round(spacing * height)), 0)
    top = min(box[1] for box in boxes)
    boxes = [(left, y - top, width, tall) for left, y, width, tall in boxes]
    layers = np.zeros((len(pieces), max(y + tall for _, y, _, tall in boxes),
                       max(left + width for left, _, width, _ in boxes)), dtype=np.uint8)
    for layer, piece, (left, y, width, tall) in zip(layers, pieces, boxes):
        layer[y : y + tall, left : left + width] = piece
    return layers, boxes


def _written_size(digit, rng):
    """An MNIST digit (28x28 uint8) cropped to its ink and scaled to about three times its size, a little larger
    or smaller each time, as the numbers here are written."""
    piece = Image.fromarray(_cropped(digit))
    scale = 3 * rng.uniform(0.9, 1.1)
    return np.asarray(piece.resize((max(1, round(piece.width * scale)), max(1, round(piece.height * scale))),
                                   Image.Resampling.BICUBIC))


def written(text, pictures, rng, spacing):
    """`text` (digits, the marks . , - / : and single spaces) written as one line of handwriting, as uint8 ink:
    each digit one of `pictures` ({digit: [28x28 uint8]}) three times MNIST's size, `spacing` apart (a share of
    the digits' height), and each mark drawn by a hand's pen at the digits' scale; a space is a wide gap."""
    height = 60  # a digit's height: MNIST's 20 px, three times
    pen_width = max(3, round(height * rng.uniform(0.09, 0.16)))
    canvas = Image.new("L", (height * (2 * len(text) + 2), 3 * height), 0)
    pen = ImageDraw.Draw(canvas)
    baseline, x = 2 * height, height // 2
    for index, character in enumerate(text):
        if index:
            x += height * (rng.uniform(0.7, 1.2) if character == " " else
                           spacing if character.isdigit() and text[index - 1].isdigit() else rng.uniform(0.1, 0.3))
        if character == " ":
            continue
        drift = rng.uniform(-0.05, 0.05) * height
        if character.isdigit():
            choices = pictures[int(character)]
            piece = _written_size(choices[int(rng.integers(len(choices)))], rng)
            top = round(baseline + drift - piece.shape[0])
            region = (round(x), top, round(x) + piece.shape[1], top + piece.shape[0])
            canvas.paste(Image.fromarray(np.maximum(np.asarray(canvas.crop(region)), piece)), region[:2])
            x += piece.shape[1]
        else:
            x += _hand_mark(pen, character, x, baseline + drift, height, pen_width, rng)
    return _cropped(np.asarray(canvas))


def _hand_mark(pen, mark, x, baseline, height, width, rng):
    """`mark` drawn by `pen` with its left at `x` on `baseline`, every point a little off; its width."""
    def wobbly(points):
        return [(px + rng.normal(0, 0.02) * height, py + rng.normal(0, 0.02) * height) for px, py in points]

    def blot(cx, cy):
        radius = width * rng.uniform(0.5, 0.9)
        pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        return 2 * radius

    if mark == ".":
        return blot(x + width, baseline - width)
    if mark == ",":
        size = blot(x + width, baseline - width)
        pen_line(pen, wobbly([(x + width * 1.4, baseline - width), (x + width * 1.2, baseline),
                              (x + width * 0.2, baseline + height * rng.uniform(0.2, 0.35))]), max(2, width * 2 // 3))
        return size + width
    if mark == "-":
        length, level = height * rng.uniform(0.3, 0.6), baseline - height * rng.uniform(0.35, 0.6)
        pen_line(pen, wobbly([(x, level), (x + length / 2, level), (x + length, level)]), width)
        return length
    if mark == "/":
        lean = height * rng.uniform(0.25, 0.55)
        pen_line(pen, wobbly([(x, baseline), (x + lean, baseline - height * rng.uniform(0.95, 1.15))]), width)
        return lean
    if mark == ":":
        size = blot(x + width, baseline - height * rng.uniform(0.05, 0.25))
        blot(x + width, baseline - height * rng.uniform(0.6, 0.8))
        return size
    raise ValueError(f"no way to write {mark!r}")


def dashes(rng):
    """Ink that is no number though it looks like part of one: a lone dash, a row of dashes, or one long stroke,
    straight or wavy, as uint8 ink in a picture as tall as a digit beside it would be; and what it is."""
    height = 60
    width = max(3, round(height * rng.uniform(0.09, 0.16)))
    canvas = Image.new("L", (12 * height, height), 0)
    pen = ImageDraw.Draw(canvas)
    kind = rng.choice(["a dash", "a row of dashes", "a stroke"])
    level = height * rng.uniform(0.35, 0.65)
    if kind == "a stroke":
        length, wave = height * rng.uniform(1.5, 6), height * rng.uniform(0, 0.15)
        xs = np.linspace(0, length, 24)
        pen_line(pen, [(height / 4 + px, level + wave * np.sin(px / height * 4)) for px in xs], width)
    else:
        x = height / 4
        for _ in range(1 if kind == "a dash" else int(rng.integers(2, 7))):
            length = height * rng.uniform(0.3, 0.7)
            tilt = length * rng.uniform(-0.08, 0.08)
            pen_line(pen, [(x, level + tilt), (x + length, level - tilt)], width)
            x += length + height * rng.uniform(0.2, 0.5)
    pixels = np.asarray(canvas)
    return np.ascontiguousarray(pixels[:, : np.flatnonzero(pixels.any(axis=0))[-1] + height // 4]), str(kind)


def several_digits(images, rng):
    """2-6 random digits of `images` written as one number, gaps and overlaps alike: what a one-digit
    answer would misread."""
    count = int(rng.choice([2, 2, 3, 3, 4, 5, 6]))
    chosen = images[rng.integers(len(images), size=count)]
    spacing = rng.uniform(-0.15, 0.8)
    return number(chosen, rng, spacing)[0], f"{count} digits, spacing {spacing:+.2f}"


def _cropped(pixels):
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    return np.ascontiguousarray(pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
