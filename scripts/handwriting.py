"""Digits and letters in handwriting fonts drawn as a pen draws them, and what real uploads do to a digit.

A font's glyph is clean type; people's digits are not. `pen_glyph` slants, tilts and bends it (an
elastic distortion: the wobble of a hand) and draws it with a pen from a hairline to a marker.
`as_uploaded` does to any ink picture (an MNIST digit, a font digit) what real pictures show: a low
resolution (16 px, binarised, as USPS and the UCI forms were scanned), blur and JPEG, a digit stretched
to fill its square frame (USPS normalised every digit to 16x16), very bold and very thin strokes.
`continental` writes an MNIST 1 or 7 as much of Europe does: a 1 with a long up-stroke, a 7 crossed.
Every picture is a uint8 array cropped to its ink, ink high (255) on 0, as glyphs.py draws.
"""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from scripts import glyphs

# What `as_uploaded` does, and how often: the rest of the time the picture is left as it is.
UPLOAD_EFFECTS = ("low_resolution", "blur_and_jpeg", "fills_frame", "bold", "thin")
UNCHANGED_SHARE = 0.4


def pen_glyph(character, font_path, rng):
    """`character` in the font at `font_path`, slanted, tilted, bent and stroked as a hand would write it."""
    size = int(rng.integers(56, 112))
    font = ImageFont.truetype(str(font_path), size)
    image = Image.new("L", (3 * size, 3 * size), 0)
    ImageDraw.Draw(image).text((size, size // 2), character, fill=255, font=font)
    image = _cropped_image(image, margin=size // 4)
    if image is None:
        raise ValueError(f"{font_path} draws no ink for {character!r}")
    image = slanted(image, rng.uniform(-0.35, 0.25), rng.uniform(-10, 10))  # most hands lean right, some left
    pixels = elastic(np.asarray(image, dtype=np.float32), rng, strength=rng.uniform(0.01, 0.04) * size,
                     smoothness=rng.uniform(0.08, 0.16) * size)
    return _restroked(pixels, rng, size)


def slanted(image, shear, degrees):
    """A Pillow image sheared by `shear` (negative: leaning right) and turned by `degrees`, grown to hold it all."""
    width, height = image.size
    image = image.transform((width + int(abs(shear) * height), height), Image.Transform.AFFINE,
                            (1, shear, -max(shear, 0) * height, 0, 1, 0), Image.Resampling.BILINEAR)
    return image.rotate(float(degrees), Image.Resampling.BILINEAR, expand=True)


def drawn_characters(font_path, characters):
    """Those of `characters` that the font at `font_path` draws: a subset file draws the rest as its missing-glyph
    box, the same picture for each."""
    font = ImageFont.truetype(str(font_path), 40)

    def drawing(character):
        mask = font.getmask(character)
        return bytes(mask), mask.size

    missing = drawing("\ue000")  # a private-use character: no font here draws one
    return "".join(character for character in characters if drawing(character) != missing)


def continental(picture, digit, rng):
    """A 1 or a 7 (uint8, ink high, as MNIST's) as much of Europe writes them: a 1 with a long up-stroke from its
    top (and sometimes a foot), a 7 with a bar across its stem, in the digit's own pen width."""
    scale = 4
    image = Image.fromarray(picture).resize((picture.shape[1] * scale, picture.shape[0] * scale),
                                            Image.Resampling.BILINEAR)
    ink = np.asarray(image) > 128
    rows, cols = np.nonzero(ink)
    if rows.size == 0:
        raise ValueError("the picture has no ink")
    top, bottom = int(rows.min()), int(rows.max())
    height = bottom - top + 1
    width = max(2, int(round(2 * np.percentile(ndimage.distance_transform_edt(ink)[ink], 90))))
    canvas = Image.new("L", (image.width * 2, image.height * 2), 0)  # room for strokes past the frame
    offset = (image.width // 2, image.height // 2)
    canvas.paste(image, offset)
    draw = ImageDraw.Draw(canvas)

    def stroke(start, end):
        glyphs.pen_line(draw, [(x + offset[0], y + offset[1]) for x, y in (start, end)], width)

    if digit == 1:
        x_top = float(cols[rows <= top + 2 * scale].mean())
        length, angle = height * rng.uniform(0.25, 0.5), np.radians(rng.uniform(25, 60))
        stroke((x_top, top), (x_top - length * np.cos(angle), top + length * np.sin(angle)))
        if rng.random() < 0.3:
            x_bottom, half = float(cols[rows >= bottom - 2 * scale].mean()), height * rng.uniform(0.12, 0.25)
            stroke((x_bottom - half, bottom), (x_bottom + half, bottom))
    elif digit == 7:
        row = int(top + height * rng.uniform(0.45, 0.6))
        x_stem = float(np.nonzero(ink[row])[0].mean()) if ink[row].any() else float(cols.mean())
        half, tilt = height * rng.uniform(0.15, 0.3), height * rng.uniform(-0.05, 0.05)
        centre = x_stem + height * rng.uniform(-0.05, 0.05)
        stroke((centre - half, row + tilt), (centre + half, row - tilt))
    else:
        raise ValueError(f"only a 1 or a 7 has a continental form, not {digit}")
    return np.asarray(_cropped_image(canvas, margin=0))


def elastic(pixels, rng, strength, smoothness):
    """`pixels` bent by a smooth random displacement field: `strength` px at most, varying over `smoothness` px."""
    height, width = pixels.shape
    shifts = [ndimage.gaussian_filter(rng.uniform(-1, 1, (height, width)), smoothness, mode="constant")
              for _ in range(2)]
    shifts = [shift * (strength / max(float(np.abs(shift).max()), 1e-6)) for shift in shifts]
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return ndimage.map_coordinates(pixels, [rows + shifts[0], cols + shifts[1]], order=1, mode="constant")


def _restroked(pixels, rng, size):
    """The glyph's strokes made thinner or bolder (a hairline pen to a marker), as a cropped uint8 picture."""
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    change = int(rng.integers(-1, 3)) * max(1, size // 28)  # in pixels of the rendering: -1 to +2 pen widths
    for _ in range(abs(change) // 2):
        image = image.filter(ImageFilter.MaxFilter(3) if change > 0 else ImageFilter.MinFilter(3))
    cropped = _cropped_image(image, margin=0)
    if cropped is None:  # thinned away: keep the font's own strokes
        cropped = _cropped_image(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), margin=0)
    return np.asarray(cropped)


def as_uploaded(picture, rng, effect=None):
    """`picture` (uint8, ink high) as a real upload might show it: `effect` (one of UPLOAD_EFFECTS), or one at
    random, or none UNCHANGED_SHARE of the time. An effect that breaks a stroke apart (a hairline lost at 16 px)
    or fills a loop (a bold 0 become a blob) is not applied: the digit would no longer be one."""
    if effect is None:
        if rng.random() < UNCHANGED_SHARE:
            return picture
        effect = UPLOAD_EFFECTS[int(rng.integers(len(UPLOAD_EFFECTS)))]
    changed = _with_effect(picture, rng, effect)
    kept = 0 < _pieces(changed) <= _pieces(picture) and _loops(changed) >= _loops(picture)
    return changed if kept else picture


def _pieces(picture):
    """How many separate strokes `picture` holds (8-connected, ignoring the faintest grey)."""
    return ndimage.label(picture > 64, structure=np.ones((3, 3)))[1]


def _loops(picture):
    """How many loops the strokes of `picture` close: the paper's pieces (4-connected) that touch no edge and
    are not pinholes (under 0.3% of the picture, as where a pen's strokes meet)."""
    paper, count = ndimage.label(np.pad(picture <= 64, 1, constant_values=True))
    sizes = np.bincount(paper.ravel())[2:]  # 0 is ink; 1, the padding's piece, holds every piece touching an edge
    return int(np.sum(sizes >= max(2, 0.003 * picture.size)))


def _with_effect(picture, rng, effect):
    image = Image.fromarray(picture)
    if effect == "low_resolution":
        small = _fit(image, int(rng.integers(14, 22)))
        threshold = rng.uniform(40, 120)
        small = small.point(lambda value: 255 if value >= threshold else 0)
        return np.asarray(small.resize((small.width * 4, small.height * 4), Image.Resampling.BILINEAR))
    if effect == "blur_and_jpeg":
        image = _fit(image, int(rng.integers(24, 64))).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
        encoded = io.BytesIO()
        Image.eval(image, lambda value: 255 - value).save(encoded, "JPEG", quality=int(rng.integers(15, 60)))
        decoded = np.asarray(Image.open(encoded).convert("L"), dtype=np.int16)
        return np.clip(255 - decoded - 25, 0, 255).astype(np.uint8)  # paper's JPEG noise below the ink
    if effect == "fills_frame":  # as tall as the frame, and as wide unless narrow (a 1 stays a bar)
        height = int(rng.integers(16, 32))
        width = round(height * image.width / image.height)
        if image.width > 0.4 * image.height:
            width = max(width, round(height * rng.uniform(0.8, 1.0)))
        image = image.resize((max(1, width), height), Image.Resampling.BOX)
        return np.asarray(image.filter(ImageFilter.MaxFilter(3)) if rng.random() < 0.5 else image)
    if effect == "bold":  # down to USPS's 16 px, where one pass is a stroke of 3 px
        image = _fit(image, int(rng.integers(16, 40)))
        for _ in range(int(rng.integers(1, 3))):
            image = image.filter(ImageFilter.MaxFilter(3))
        return np.asarray(image)
    if effect == "thin":
        image = _fit(image, 80)
        thinned = image.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MinFilter(3))
        return np.asarray(thinned if thinned.getbbox() else image)
    raise ValueError(f"unknown upload effect {effect!r}")


def _fit(image, side):
    """`image` resized so that its longest side is `side` px."""
    scale = side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)


def _cropped_image(image, margin):
    """`image` cropped to its ink plus `margin` px, or None when it has none."""
    box = image.point(lambda value: 255 if value > 8 else 0).getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    return image.crop((max(left - margin, 0), max(top - margin, 0), right + margin, bottom + margin))


def pen_path(points, aspect, rng):
    """A digit from a tablet's pen path (`points`, (n, 2): x right, y up) as uint8 ink: `aspect` times as wide as
    it is tall, a smooth curve through the points (Catmull-Rom), slanted and tilted a little, drawn with a pen
    from fine to bold."""
    points = np.asarray(points, dtype=np.float64)
    points = (points - points.min(axis=0)) / np.maximum(np.ptp(points, axis=0), 1e-6) * [aspect, -1]
    shear, angle = rng.uniform(-0.25, 0.15), np.radians(rng.uniform(-8, 8))
    points = points @ np.array([[1, 0], [shear, 1]]) @ np.array([[np.cos(angle), np.sin(angle)],
                                                                  [-np.sin(angle), np.cos(angle)]])
    padded = np.vstack([points[:1], points, points[-1:]])
    steps = np.linspace(0, 1, 8, endpoint=False)[:, None]
    curve = [padded[1]]
    for before, start, end, after in zip(padded, padded[1:], padded[2:], padded[3:]):
        curve.extend(0.5 * (2 * start + (end - before) * steps + (2 * before - 5 * start + 4 * end - after) * steps ** 2
                            + (3 * start - before - 3 * end + after) * steps ** 3)[1:])
        curve.append(end)
    curve = np.array(curve)
    height = 80
    curve = (curve - curve.min(axis=0)) * (height / max(np.ptp(curve, axis=0).max(), 1e-6))
    width = max(2, int(round(height * rng.uniform(0.06, 0.16))))
    image = Image.new("L", tuple(int(side) + 2 * width for side in np.ptp(curve, axis=0) + 1), 0)
    glyphs.pen_line(ImageDraw.Draw(image), [tuple(point) for point in curve + width], width)
    return np.asarray(_cropped_image(image, margin=0))
