"""Test pictures made in code: digits drawn as pen strokes, rendered the ways users send them."""

import csv
import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

# Each digit as pen strokes: lists of (x, y) points in a unit box, y downwards, as a person writes it.
STROKES = {
    0: [[(0.5, 0.0), (0.2, 0.12), (0.05, 0.5), (0.2, 0.88), (0.5, 1.0), (0.8, 0.88), (0.95, 0.5), (0.8, 0.12),
         (0.5, 0.0)]],
    1: [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.1, 0.25), (0.3, 0.03), (0.6, 0.0), (0.85, 0.2), (0.8, 0.45), (0.1, 1.0), (0.95, 1.0)]],
    3: [[(0.1, 0.1), (0.4, 0.0), (0.8, 0.08), (0.85, 0.3), (0.4, 0.48), (0.85, 0.62), (0.9, 0.85), (0.55, 1.0),
         (0.1, 0.92)]],
    4: [[(0.65, 1.0), (0.65, 0.0), (0.05, 0.7), (0.95, 0.7)]],
    5: [[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45), (0.55, 0.38), (0.85, 0.6), (0.8, 0.9), (0.45, 1.0), (0.1, 0.9)]],
    6: [[(0.75, 0.0), (0.3, 0.3), (0.12, 0.7), (0.3, 0.98), (0.65, 0.98), (0.85, 0.72), (0.6, 0.5), (0.2, 0.62)]],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)]],
    8: [[(0.5, 0.48), (0.15, 0.25), (0.5, 0.0), (0.85, 0.25), (0.5, 0.48), (0.1, 0.75), (0.5, 1.0), (0.9, 0.75),
         (0.5, 0.48)]],
    9: [[(0.85, 0.3), (0.5, 0.5), (0.15, 0.3), (0.45, 0.0), (0.85, 0.15), (0.85, 0.3), (0.75, 1.0)]],
}


# Pictures that are no digit, drawn the same way: what a person might try on the page.
SHAPES = {
    "H": [[(0.1, 0.0), (0.1, 1.0)], [(0.9, 0.0), (0.9, 1.0)], [(0.1, 0.5), (0.9, 0.5)]],
    "A": [[(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)], [(0.25, 0.62), (0.75, 0.62)]],
    "plus": [[(0.5, 0.05), (0.5, 0.95)], [(0.05, 0.5), (0.95, 0.5)]],
    "triangle": [[(0.5, 0.05), (0.95, 0.9), (0.05, 0.9), (0.5, 0.05)]],
    "star": [[(0.5, 0.0), (0.79, 0.9), (0.02, 0.35), (0.98, 0.35), (0.21, 0.9), (0.5, 0.0)]],
    "smiley": [[(0.5 + 0.45 * np.cos(a), 0.5 + 0.45 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 40)],
               [(0.35, 0.35), (0.35, 0.4)], [(0.65, 0.35), (0.65, 0.4)],
               [(0.5 + 0.25 * np.cos(a), 0.55 + 0.2 * np.sin(a)) for a in np.linspace(0.3, np.pi - 0.3, 12)]],
    "scribble": [[(0.1, 0.2), (0.9, 0.1), (0.2, 0.5), (0.8, 0.45), (0.15, 0.9), (0.6, 0.3), (0.9, 0.95), (0.3, 0.7),
                  (0.05, 0.05)]],
}


def draw_digit(digit, size, box, stroke, ink=255, background=0, mode="L", offset=(0, 0), image=None):
    """`digit` (or a SHAPES name) drawn with strokes `stroke` px wide in a `box`-px square placed in a `size`
    picture: a new one, or `image` drawn over."""
    image = image or Image.new(mode, size, background)
    pen = ImageDraw.Draw(image)
    left = (size[0] - box) / 2 + offset[0]
    top = (size[1] - box) / 2 + offset[1]
    for line in STROKES.get(digit) or SHAPES[digit]:
        points = [(left + x * box * 0.75 + box * 0.125, top + y * box) for x, y in line]
        pen.line(points, fill=ink, width=stroke, joint="curve")
        radius = stroke / 2
        for x, y in (points[0], points[-1]):
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)
    return image


# The marks people write in numbers, as strokes in a box as tall as a digit and MARK_WIDTHS of its height wide.
MARKS = {
    ".": [[(0.5, 0.93), (0.5, 0.95)]],
    ",": [[(0.7, 0.9), (0.3, 1.12)]],
    "-": [[(0.0, 0.52), (1.0, 0.5)]],
    "/": [[(1.0, 0.0), (0.0, 1.0)]],
    ":": [[(0.5, 0.3), (0.5, 0.32)], [(0.5, 0.9), (0.5, 0.92)]],
}
MARK_WIDTHS = {".": 0.15, ",": 0.15, "-": 0.4, "/": 0.45, ":": 0.15, " ": 0.8}


def draw_number(text, height=120, stroke=12, gap=0.35, ink=255, background=0, mode="L", slope=0.0, margin=40):
    """`text` written left to right, its digits each `height` px tall with `gap` of that between characters, its
    marks (MARKS) and spaces narrower, the line rising by `slope` px per px; the picture, and each digit's
    (x, y, width, height) box in it."""
    width = height * 0.75  # draw_digit keeps a digit within the middle three quarters of its box
    advances = [(width if character.isdigit() else MARK_WIDTHS[character] * height) + gap * height
                for character in text]
    length = sum(advances)
    size = (int(2 * margin + length), int(2 * margin + height + abs(slope) * length))
    image = Image.new(mode, size, background)
    pen = ImageDraw.Draw(image)
    boxes, left = [], margin
    for character, advance in zip(text, advances):
        top = margin + (abs(slope) * length if slope > 0 else 0) - slope * (left - margin)
        if character.isdigit():
            draw_digit(int(character), size, height, stroke, ink, background, offset=(
                left - (size[0] - height) / 2 - height * 0.125, top - (size[1] - height) / 2), image=image)
            boxes.append((left, top, width, height))
        for line in MARKS.get(character, []):
            points = [(left + x * MARK_WIDTHS[character] * height, top + y * height) for x, y in line]
            pen.line(points, fill=ink, width=stroke)
            for x, y in (points[0], points[-1]):
                pen.ellipse((x - stroke / 2, y - stroke / 2, x + stroke / 2, y + stroke / 2), fill=ink)
        left += advance
    return image, boxes


def pen_drawing(lines, size, stroke, margin=0.0, height=None):
    """Polylines in a unit box (y downwards) drawn dark on white in a `size`-px square picture at 4x, then reduced
    as a scanner would: `margin` of the side left blank around the box, `height` (a share) how tall it stands."""
    big = 4 * size
    image = Image.new("L", (big, big), 255)
    pen = ImageDraw.Draw(image)
    inner = big * (1 - 2 * margin)
    tall = inner * (height or 1)
    top = (big - tall) / 2
    for line in lines:
        points = [(big * margin + x * inner, top + y * tall) for x, y in line]
        pen.line(points, fill=0, width=4 * stroke, joint="curve")
        for x, y in (points[0], points[-1]):
            pen.ellipse((x - 2 * stroke, y - 2 * stroke, x + 2 * stroke, y + 2 * stroke), fill=0)
    return image.resize((size, size), Image.Resampling.BOX)


def ring(cx=0.5, cy=0.5, rx=0.42, ry=0.45, points=48):
    angles = np.linspace(0, 2 * np.pi, points)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


def mnist_style(digit):
    """A 28x28 white-on-black digit about 20 px tall, as in MNIST."""
    return draw_digit(digit, (28, 28), 19, 2).filter(ImageFilter.GaussianBlur(0.5))


def mnist_style_rgba(digit):
    """The original service's test picture: an MNIST-style digit saved as an opaque RGBA PNG."""
    return mnist_style(digit).convert("RGBA")


def paper_photo(digit, size=(2400, 1800), seed=0):
    """A phone photo: dark marker on yellow sticky-note paper, uneven light, sensor noise, slight blur."""
    mask = draw_digit(digit, size, int(size[1] * 0.55), int(size[1] * 0.035), offset=(size[0] * 0.06, -size[1] * 0.04))
    return marker_on_paper(mask, seed)


def marker_on_paper(mask, seed=0):
    """A phone photo of the ink of `mask` (an "L" picture, 255 = ink) in dark marker on a yellow sticky note."""
    rng = np.random.default_rng(seed)
    size = mask.size
    mask = np.asarray(mask, dtype=np.float32) / 255
    paper = np.array([245, 228, 120], dtype=np.float32)
    marker = np.array([30, 35, 70], dtype=np.float32)
    colour = paper * (1 - mask[..., None]) + marker * mask[..., None]
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    light = 0.65 + 0.35 * (xs / size[0]) * (1 - 0.3 * ys / size[1])
    pixels = colour * light[..., None] + rng.normal(0, 6, (size[1], size[0], 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(1.5))


def pen_on_sheet(text, seed=0, height=500, stroke=40):
    """A phone photo of `text` in blue pen on a white sheet that fills the frame, lit more from the right: the
    writing `height` px tall, 600 px from every edge."""
    ink, _ = draw_number(text, height=height, stroke=stroke, margin=600)
    rng = np.random.default_rng(seed)
    mask = np.asarray(ink, dtype=np.float32)[..., None] / 255
    colour = np.array([238, 236, 230], np.float32) * (1 - mask) + np.array([30, 35, 80], np.float32) * mask
    light = 0.8 + 0.2 * np.linspace(0, 1, ink.width)[None, :, None]
    pixels = colour * light + rng.normal(0, 4, colour.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(1.2))


def ruled(photo, through, spacing, margin):
    """`photo`'s sheet ruled as a notebook's page, printed under the writing: pale blue lines `spacing` px apart,
    one along row `through`, and a red margin down column `margin`."""
    pixels = np.asarray(photo, dtype=np.float32).copy()
    for row in range(through % spacing, photo.height, spacing):
        pixels[row - 3 : row + 3] *= (0.69, 0.81, 1.0)
    pixels[:, margin - 3 : margin + 3] *= (0.95, 0.51, 0.52)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def squared(photo, spacing):
    """`photo`'s sheet printed with a pale grid of `spacing` px squares under the writing."""
    pixels = np.asarray(photo, dtype=np.float32).copy()
    pixels[np.arange(photo.height) % spacing < 5] *= (0.78, 0.85, 0.96)
    pixels[:, np.arange(photo.width) % spacing < 5] *= (0.78, 0.85, 0.96)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def in_shadow(photo, share, darkness=0.55):
    """`photo` with a hard shadow (a hand's, a phone's) cast over its right `share`, its edge slanting a little:
    what lies in it is `darkness` as bright."""
    width, height = photo.size
    xs = np.arange(width)[None, :] + 0.1 * np.arange(height)[:, None]
    shade = np.clip((xs - (1 - share) * width) / 6, 0, 1)[..., None]
    pixels = np.asarray(photo, dtype=np.float32) * (1 - (1 - darkness) * shade)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def desk(size, seed=0):
    """A brown wooden desk's top, its grain running across."""
    rng = np.random.default_rng(seed)
    grain = 0.3 * np.cumsum(rng.normal(0, 3, size[0]))[None, :, None]
    pixels = np.array([92, 64, 42], np.float32) + grain + rng.normal(0, 5, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def on_desk(photo, side, share, seed=0):
    """`photo` with a strip of desk along one side ("left", "right", "top", "bottom"), `share` of it wide."""
    width, height = photo.size
    cut = int(share * (width if side in ("left", "right") else height))
    box = {"left": (0, 0, cut, height), "right": (width - cut, 0, width, height), "top": (0, 0, width, cut),
           "bottom": (0, height - cut, width, height)}[side]
    scene = photo.copy()
    scene.paste(desk(photo.size, seed).crop(box), box[:2])
    return scene


def tilted_on_desk(photo, degrees, seed=0):
    """`photo`'s sheet turned by `degrees` on a desk: the desk shows in wedges at the corners."""
    turned = photo.convert("RGBA").rotate(degrees, Image.Resampling.BILINEAR)
    scene = desk(photo.size, seed)
    scene.paste(turned, (0, 0), turned)
    return scene


def on_printed_paper(text, height=30, seed=0):
    """A cheque's amount as a bank scans it: `text` in dark pen, its digits `height` px tall, on paper printed with
    a fine grey texture of every shade from light to nearly the pen's, saved as JPEG."""
    picture, _ = draw_number(text, height=4 * height, stroke=int(0.28 * height), ink=0, background=255,
                             margin=2 * height)
    size = (picture.width // 4, picture.height // 4)
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(size[1], size[0])), 0.8)
    paper = 120 + 130 * (texture - texture.min()) / (texture.max() - texture.min())
    writing = np.asarray(picture.resize(size, Image.Resampling.BOX), dtype=np.float32)
    return encode(Image.fromarray(np.minimum(paper, writing).astype(np.uint8)), "JPEG", quality=85)


def register_cell(number, footer=True):
    """A parish register's numbered cell as scanned, 130x200: black past the page's edge, the margin's double rule
    and the cell's right rule stopping short of the foot, the top rule cut off where the crop began, the clerk's
    number 20 px tall with a full stop, and the printer's line at the foot; and the number's (x, y, width, height)."""
    ink, _ = draw_number(number, height=80, stroke=8, margin=8)
    ink = ink.resize((ink.width // 4, ink.height // 4), Image.Resampling.BOX)
    cell = Image.new("L", (130, 200), 228)
    cell.paste(Image.eval(ink, lambda v: 255 - v), (62, 60), ink)
    pen = ImageDraw.Draw(cell)
    pen.ellipse((62 + ink.width, 60 + ink.height - 6, 65 + ink.width, 63 + ink.height - 6), fill=40)  # full stop
    pen.rectangle((0, 0, 24, 199), fill=10)  # beyond the page
    for x in (36, 40):
        pen.line([(x, 0), (x, 172)], fill=70, width=2)
    pen.line([(124, 0), (124, 176)], fill=70, width=1)
    pen.line([(64, 5), (129, 5)], fill=70, width=2)
    if footer:
        pen.text((38, 184), "Trykt for Kirkens", fill=20, font=ImageFont.load_default(size=10))
    return cell.convert("RGB"), (62, 60, ink.width + 3, ink.height)


def encode(image, format="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, rows, bits=1):
    """A complete grey PNG from its zlib-compressed rows (each a filter byte and the packed pixels)."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))
            + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b""))


def png_header_only(width, height):
    """A few hundred bytes that claim to be a huge 1-bit PNG: a decompression bomb's shape."""
    return png(width, height, zlib.compress(b"\x00" * (width // 8 + 1) * 8))


def write_set(folder, header, rows):
    """`folder` with one PNG and one labels.csv line per row (picture, the columns after `file`)."""
    folder.mkdir()
    with open(folder / "labels.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for number, (picture, *columns) in enumerate(rows):
            (folder / f"{number}.png").write_bytes(encode(picture))
            writer.writerow([f"{number}.png", *columns])
    return folder
