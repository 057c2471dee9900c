"""Test pictures made in code: digits drawn as pen strokes, rendered the ways users send them."""

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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


def draw_digit(digit, size, box, stroke, ink=255, background=0, mode="L", offset=(0, 0)):
    """`digit` drawn with strokes `stroke` px wide in a `box`-px square placed in a `size` picture."""
    image = Image.new(mode, size, background)
    pen = ImageDraw.Draw(image)
    left = (size[0] - box) / 2 + offset[0]
    top = (size[1] - box) / 2 + offset[1]
    for line in STROKES[digit]:
        points = [(left + x * box * 0.75 + box * 0.125, top + y * box) for x, y in line]
        pen.line(points, fill=ink, width=stroke, joint="curve")
        radius = stroke / 2
        for x, y in (points[0], points[-1]):
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)
    return image


def mnist_style(digit):
    """A 28x28 white-on-black digit about 20 px tall, as in MNIST."""
    return draw_digit(digit, (28, 28), 19, 2).filter(ImageFilter.GaussianBlur(0.5))


def mnist_style_rgba(digit):
    """The original service's test picture: an MNIST-style digit saved as an opaque RGBA PNG."""
    return mnist_style(digit).convert("RGBA")


def paper_photo(digit, size=(2400, 1800), seed=0):
    """A phone photo: dark marker on yellow sticky-note paper, uneven light, sensor noise, slight blur."""
    rng = np.random.default_rng(seed)
    mask = np.asarray(draw_digit(digit, size, int(size[1] * 0.55), int(size[1] * 0.035),
                                 offset=(size[0] * 0.06, -size[1] * 0.04)), dtype=np.float32) / 255
    paper = np.array([245, 228, 120], dtype=np.float32)
    marker = np.array([30, 35, 70], dtype=np.float32)
    colour = paper * (1 - mask[..., None]) + marker * mask[..., None]
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    light = 0.65 + 0.35 * (xs / size[0]) * (1 - 0.3 * ys / size[1])
    pixels = colour * light[..., None] + rng.normal(0, 6, (size[1], size[0], 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(1.5))


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
