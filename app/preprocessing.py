"""Turn any picture of one handwritten digit into the MNIST convention the model was trained on.

MNIST digits are light ink on a black background, their longest side scaled to 20 px, placed
in a 28x28 frame with their centre of mass at its centre. The steps, each a function:
`decode` (bytes to a Pillow image, within limits) -> `ink_map` (a float map, 1.0 = ink, whatever
the colours, transparency or lighting) -> `frame_digit` (crop, scale, centre: 28x28 uint8) ->
`to_model_input` (the tensor). Training and serving share `frame_digit` and `to_model_input`.
"""

import io
import warnings

import numpy as np
import pillow_heif
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage

SIDE = 28
BOX = 20
INK_LEVEL = 0.5 / 255  # below the faintest grey a uint8 image holds: an MNIST digit frames to itself
DETAIL_BOX = 4 * BOX  # larger crops are first reduced to this: enough detail to measure strokes
THIN_STROKE = 1.3  # stroke width (px, at the 20 px scale) thinner than 99.98% of MNIST: such strokes are thickened
MNIST_STROKE = 2.8  # ... to MNIST's median stroke width
WORK_SIDE = 512  # larger pictures are reduced to this before the ink is found: plenty for a 20 px result
SMALL_SIDE = 64  # below this a picture is taken as evenly lit: one background level, no speck removal unless grainy
MIN_CONTRAST = 0.08  # ink must differ from its background by this much (and by 4 noise sigmas) to count
PAPER_PERCENTILE = 5  # the paper's level is read this far up the (ink-up) histogram: ink may cover 95%
GRID = 16  # cells along the longest side of a large picture, over which its lighting may vary
GRAIN = 0.25  # faint ink 2 px or more from any stroke, as a share of the strokes: more is the paper's texture
STROKE_LEVEL = 0.3  # ink-map level of a stroke, for GRAIN
LIGHTING_TOLERANCE = 0.1  # a cell's paper may lie this far above the smooth lighting: shadows, not ink
OTSU_BINS = np.arange(64) + 0.5  # the histogram's bins for Otsu's threshold, as their centres
LINE_HEIGHT = 32  # the line reader's input: a line's ink scaled to this height, less a margin above and below
LINE_MARGIN = 2
LINE_INK = 0.2  # ink-map level that counts as ink when a line is cropped to its ink
LINE_WIDTHS = (128, 256, 512)  # lines are padded to one of these widths; a wider one is squeezed to the last
# The formats the service reads: HEIF is the HEIC an iPhone saves by default (pillow-heif's decoder), AVIF
# Pillow's own. Pillow's other decoders are rarely needed attack surface, and its EPS reader runs Ghostscript
# on the upload wherever Ghostscript is installed.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF")
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF, WebP, HEIC or AVIF"

warnings.simplefilter("ignore", Image.DecompressionBombWarning)
pillow_heif.register_heif_opener(thumbnails=False)
Image.init()  # register every format now, not during the first request


class InvalidImage(ValueError):
    """The bytes are not an image Pillow can read."""


class ImageTooLarge(ValueError):
    """The image has more pixels than the service accepts (a decompression bomb, or just too big)."""


class NoDigit(ValueError):
    """The image holds no ink: nothing to read."""


def preprocess(data, max_pixels):
    """Image bytes to the 28x28 uint8 MNIST-convention digit the model reads."""
    return frame_digit(ink_map(decode(data, max_pixels)))


def decode(data, max_pixels):
    """Bytes to an upright Pillow image (first frame), refusing to decode more than `max_pixels`."""
    return decode_upright(data, max_pixels)[0]


def decode_upright(data, max_pixels):
    """`decode`, and the picture's full size once upright (a JPEG may be decoded smaller than it is)."""
    image = None
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width == 0 or height == 0:
            raise InvalidImage("the image has no pixels")
        if image.format == "JPEG":  # decoded at down to 1/8 scale: a 48-megapixel photo costs under one
            image.draft(image.mode, (WORK_SIDE, WORK_SIDE))
        if image.width * image.height > max_pixels:  # what would be decoded, before any of it is
            raise ImageTooLarge(f"the image is {width}x{height}: at most {max_pixels:,} pixels are decoded")
        decoded = image.size
        image.seek(0)
        ImageOps.exif_transpose(image, in_place=True)  # loads it; in place: no copy when it is upright
        upright = (width, height) if image.size == decoded else (height, width)
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"the image is larger than {max_pixels:,} pixels")
    except (ImageTooLarge, InvalidImage):
        raise
    except Exception:  # Pillow's decoders raise many types for broken input: all mean "not readable"
        if image is not None:  # its header was read: the rest is damaged or cut short
            kind = "HEIC" if image.format == "HEIF" else image.format
            raise InvalidImage(f"the {kind} image is damaged or cut short and cannot be decoded: send the whole "
                               f"file again, or save the picture anew")
        raise InvalidImage(f"the data is not an image that can be read ({FORMAT_NAMES})")
    return image, upright


def ink_map(image):
    """A float map in [0, 1] where 1.0 is ink: colours, polarity, transparency and uneven light removed."""
    plane, alpha = _planes(image)
    if alpha is not None and np.mean(alpha < 0.5) > 0.5:
        plane = alpha  # strokes on a transparent canvas: the paint is the ink, whatever its colour
    else:
        if alpha is not None:
            plane = alpha * plane + (1 - alpha) * np.median(plane[alpha >= 0.5])
        plane = _ink_up(plane)
    small = min(plane.shape) < SMALL_SIDE
    deviation = plane - _background(plane, small)
    ink = _normalise(deviation, small)
    if small and _grain(ink) > GRAIN:  # a small scan of printed texture (a cheque's): its grain is dropped as a photo's
        ink = _normalise(deviation, small=False)
    return ink


def to_model_input(digits):
    """uint8 digits (..., 28, 28), white on black, as the model's float32 (n, 28, 28, 1) in [0, 1]."""
    pixels = np.asarray(digits, dtype=np.float32).reshape(-1, SIDE, SIDE, 1)
    return pixels * np.float32(1 / 255)


def frame_digit(ink):
    """Crop a float ink map (1.0 = ink) to its ink, scale the longest side to 20 px, centre by mass.

    Strokes far thinner than any MNIST pen (a fine pen photographed large) are thickened to MNIST's
    typical width first. An MNIST digit comes back as it was (to within one grey level).
    """
    ink = np.fmin(np.fmax(np.asarray(ink, dtype=np.float32), 0), 1)  # NaN to 0, the rest into [0, 1]
    rows, cols = _extent(ink >= INK_LEVEL)
    if rows is None:
        raise NoDigit("the image has no ink: draw or photograph one digit")
    crop = ink[rows, cols]
    if max(crop.shape) > DETAIL_BOX:
        crop = _resize(crop, DETAIL_BOX / max(crop.shape))
    scale = BOX / max(crop.shape)
    width = _stroke_width(crop) * scale
    if width < THIN_STROKE:
        crop = _thicken(crop, (MNIST_STROKE - width) / scale)
        crop = crop[_extent(crop >= INK_LEVEL)]
        scale = BOX / max(crop.shape)
    scaled = np.maximum(_resize(crop, scale), 0)
    return _centre_by_mass(scaled / scaled.max())  # stroke cores at full brightness, as in MNIST


def line_crop(ink):
    """The rows and columns of a line's float ink map (1.0 = ink) that frame_line keeps: its ink's extent."""
    rows, cols = _extent(np.asarray(ink) >= LINE_INK)
    if rows is None:
        raise NoDigit("the image has no ink: write or photograph a number")
    return rows, cols


def frame_line(ink, crop=None):
    """A line's float ink map (1.0 = ink) cropped to its ink (line_crop, or `crop` where the caller has it) and
    scaled so that the ink is LINE_HEIGHT less two margins tall, as uint8 (LINE_HEIGHT, width), ink high;
    squeezed to the widest of LINE_WIDTHS if wider."""
    ink = np.fmin(np.fmax(np.asarray(ink, dtype=np.float32), 0), 1)
    crop = ink[crop or line_crop(ink)]
    tall = LINE_HEIGHT - 2 * LINE_MARGIN
    wide = min(max(1, round(crop.shape[1] * tall / crop.shape[0])), LINE_WIDTHS[-1] - 2 * LINE_MARGIN)
    resample = Image.Resampling.BOX if crop.shape[0] > tall else Image.Resampling.BILINEAR
    scaled = np.maximum(_pixels(_float_image(crop).resize((wide, tall), resample), np.float32), 0)
    framed = np.zeros((LINE_HEIGHT, wide + 2 * LINE_MARGIN), dtype=np.float32)
    framed[LINE_MARGIN:-LINE_MARGIN, LINE_MARGIN:-LINE_MARGIN] = scaled / max(float(scaled.max()), 1e-6)
    return np.rint(framed * 255).astype(np.uint8)


def padded_lines(lines):
    """uint8 lines of frame_line as the line reader's float32 input (n, LINE_HEIGHT, width, 1), all padded on the
    right to the narrowest of LINE_WIDTHS that holds the widest."""
    width = next(width for width in LINE_WIDTHS if width >= max(line.shape[1] for line in lines))
    batch = np.zeros((len(lines), LINE_HEIGHT, width, 1), dtype=np.float32)
    for row, line in zip(batch, lines):
        row[:, : line.shape[1], 0] = line * np.float32(1 / 255)
    return batch


def frame_digits(digits):
    """`frame_digit` over a stack of uint8 MNIST-convention digits, as training-time evaluation applies it."""
    return np.stack([frame_digit(digit * np.float32(1 / 255)) for digit in np.asarray(digits)])


def _planes(image):
    """Luminance and alpha (or None) as float32 in [0, 1], reduced to at most WORK_SIDE a side."""
    if max(image.size) > WORK_SIDE:
        image = _resizable(image)
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    alpha = None
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        alpha = _pixels(rgba.getchannel("A"), np.uint8).astype(np.float32) / 255
        image = rgba.convert("RGB")
        if alpha.min() > 0.99:
            alpha = None
    if image.mode.startswith("I") or image.mode == "F":
        # 16- or 32-bit: scaled to its own range, never clipped. A float image's NaN and infinities become
        # numbers, and float64 holds the widest float32 range without overflowing.
        values = np.nan_to_num(np.asarray(image, dtype=np.float32)).astype(np.float64)
        values -= min(float(values.min()), 0.0)
        return (values / max(float(values.max()), 1e-6)).astype(np.float32), alpha
    if image.mode == "LAB":
        image = image.getchannel("L")  # its lightness: Pillow converts LAB to no other mode
    grey = image if image.mode == "L" else image.convert("L")
    return _pixels(grey, np.uint8).astype(np.float32) / 255, alpha


def _resizable(image):
    """A new image for `thumbnail` to reduce in place, in a mode it can average: palette and CMYK pictures
    as RGB (or RGBA), 1-bit ones as greys, 16-bit ones as 32-bit (it cannot reduce them). The conversion is
    the copy, not a second one: a 50-megapixel picture can be a few kilobytes of PNG."""
    if image.mode in ("P", "1", "CMYK") and _has_alpha(image):
        return image.convert("RGBA")
    if image.mode in ("P", "CMYK"):
        return image.convert("RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode.startswith("I;16"):
        return image.convert("I")
    return image.copy()


def _has_alpha(image):
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _ink_up(plane):
    """Orient a luminance plane so that ink is high: MNIST's white on black, whatever was drawn with.

    The paper is the level most of the edges show, and ink what departs from it by more than the noise. A
    small picture is often a scan cropped tight, its digit touching every edge (USPS's bold 0s and 2s): there
    the paper is what most of the corners' pixels show, on one side of Otsu's threshold, and only where the
    corners split evenly the edges' level, with the noise measured between neighbours, which ink covering
    half the picture does not raise.
    """
    small = min(plane.shape) < SMALL_SIDE
    if small and plane.max() > 0:
        side = max(1, min(plane.shape) // 8)
        corners = np.concatenate([plane[:side, :side], plane[:side, -side:], plane[-side:, :side],
                                  plane[-side:, -side:]], axis=None)
        dark = float(np.mean(corners < _otsu(plane, float(plane.max()))))
        if dark != 0.5:
            return plane if dark > 0.5 else 1 - plane
    ring = np.concatenate([plane[0], plane[-1], plane[1:-1, 0], plane[1:-1, -1]])
    deviation = plane - _quantile(ring, 0.5)  # the edges are mostly paper, even when a digit is cropped tight
    floor = 3 * (_paper_noise(plane) if small else _noise_sigma(deviation))
    brighter = np.maximum(deviation - floor, 0).sum()
    darker = np.maximum(-deviation - floor, 0).sum()
    return plane if brighter >= darker else 1 - plane


def _background(plane, small):
    """The paper's level at every pixel: one number for small pictures, a smooth map for photos.

    The paper is the low end of the (ink-up) values, wherever ink covers most of a picture (a digit
    cropped tight to its ink): a low percentile, per cell of a 16x16 grid for large pictures, each cell
    taking the lowest of its neighbours and held within LIGHTING_TOLERANCE of a smooth lighting fit, so
    that cells covered in ink take the paper's level rather than the ink's.
    """
    if small:
        return np.float32(_quantile(plane, PAPER_PERCENTILE / 100))
    height, width = plane.shape
    cell = -(-max(height, width) // GRID)
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.pad(plane, ((0, rows * cell - height), (0, cols * cell - width)), mode="edge")
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    paper = _float_image(np.percentile(blocks, PAPER_PERCENTILE, axis=2))
    paper = _pixels(paper.filter(ImageFilter.MinFilter(3)), np.float32)
    paper = _float_image(np.minimum(paper, _lighting(paper) + LIGHTING_TOLERANCE))
    return _pixels(paper.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def _grain(ink):
    """Faint ink away from every stroke (2 px or more), as a share of the strokes' ink: near nothing for a
    drawing or a clean scan, whose faint pixels are its strokes' edges; most of a textured paper's."""
    strokes = ink >= STROKE_LEVEL
    near = ndimage.maximum_filter(strokes, size=5)
    return np.count_nonzero((ink > 0) & ~near) / max(1, np.count_nonzero(strokes))


def _lighting(levels):
    """A smooth (quadratic) surface under a grid of paper levels, fitted so that cells lying well above it,
    covered in ink rather than lit differently, do not pull it up."""
    rows, cols = levels.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y, x = y.ravel() / rows, x.ravel() / cols
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = levels.ravel()
    kept = np.ones(values.size, dtype=bool)
    for _ in range(5):
        fit, *_ = np.linalg.lstsq(terms[kept], values[kept], rcond=None)
        residual = values - terms @ fit
        kept = residual < 2.5 * _noise_sigma(residual[kept]) + 0.01
    return (terms @ fit).reshape(rows, cols).astype(np.float32)


def _noise_sigma(values):
    """A robust noise estimate: the median absolute deviation, scaled to a Gaussian sigma."""
    return 1.4826 * _quantile(np.abs(values - _quantile(values, 0.5)), 0.5)


def _paper_noise(plane):
    """Pixel noise sigma from differences between neighbours, across and down (whichever is smaller, as a
    stroke along one axis adds steps only across it): unlike the spread of the values, it does not grow
    with how much of the picture is ink."""
    steps = [np.abs(step) for step in (plane[1:] - plane[:-1], plane[:, 1:] - plane[:, :-1]) if step.size]
    return 1.4826 * min((_quantile(step, 0.5) for step in steps), default=0.0) / np.sqrt(2)


def _normalise(deviation, small):
    """From ink's rise above the paper: zero the paper's noise, stretch stroke cores to 1.0, drop specks.

    Small pictures keep every grey above the noise (an MNIST digit comes through unchanged); large ones
    also drop what is below half of Otsu's ink threshold, shading that would blur a 20 px digit's edges.
    """
    strength = np.maximum(deviation, 0)
    top = float(strength.max())
    if top < MIN_CONTRAST:
        raise NoDigit("the image has no ink: draw or photograph one digit")
    sigma = _paper_noise(deviation)
    threshold = _otsu(strength, top)
    strokes = strength[strength >= threshold]
    peak = _quantile(strokes, 0.9) if strokes.size else 0.0
    floor = min(3 * sigma, threshold / 2) if small else threshold / 2
    if peak < max(MIN_CONTRAST, 4 * sigma, floor + MIN_CONTRAST):
        raise NoDigit("the image has no ink: draw or photograph one digit")
    ink = np.minimum((strength - floor) * np.float32(1 / (peak - floor)), 1)
    np.maximum(ink, 0, out=ink)
    if not small:
        ink *= _neighbours(ink > 0) >= 3
    return ink


def _otsu(values, top):
    """Otsu's threshold: the level that best splits the values (whose maximum is `top`) into two classes."""
    bins = len(OTSU_BINS)
    counts = np.bincount(np.minimum((values.ravel() * (bins / top)).astype(np.intp), bins - 1), minlength=bins)
    weight = np.cumsum(counts)
    mass = np.cumsum(counts * (OTSU_BINS * (top / bins)))
    total, total_mass = weight[-1], mass[-1]
    low, low_mass = weight[:-1], mass[:-1]  # the top bin holds the maximum, so the upper class is never empty
    between = (low_mass * total - low * total_mass) ** 2 / (np.maximum(low, 1) * (total - low))
    return (int(between.argmax()) + 1) * top / bins


def _quantile(values, fraction):
    """The value `fraction` of the way up the sorted values (no interpolation): np.percentile, cheaper."""
    flat = values.ravel()
    rank = int(fraction * (flat.size - 1))
    if flat.size <= 4096:  # a small array: sorting it is several times faster than np.percentile's checks
        return float(np.sort(flat)[rank])
    return float(np.percentile(flat, fraction * 100, method="lower"))


def _neighbours(mask):
    """How many pixels of the 3x3 neighbourhood (itself included) are set."""
    padded = np.pad(mask.astype(np.uint8), 1)
    height, width = mask.shape
    return sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))


def _resize(image, scale):
    height, width = image.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):  # an MNIST digit's 20 px box: Pillow would only copy it
        return image
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return _pixels(_float_image(image).resize(size, resample), np.float32)


def _float_image(pixels):
    """A float32 array as a Pillow "F" image, without the checks of Image.fromarray (a third of a small
    resize's cost)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    height, width = pixels.shape
    return Image.frombuffer("F", (width, height), pixels, "raw", "F", 0, 1)


def _pixels(image, dtype):
    """A one-band Pillow image's pixels as a (read-only) array of `dtype`, the type its mode stores."""
    return np.frombuffer(image.tobytes(), dtype=dtype).reshape(image.height, image.width)


def _stroke_width(ink):
    """Mean stroke width in pixels: twice the ink's area over its outline's length."""
    mask = ink >= 0.25
    inside = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    outline = np.count_nonzero(mask) - np.count_nonzero(inside)  # pixels on the crop's edge are outline
    return 2 * float(ink.sum()) / max(outline, 1)


def _thicken(ink, by):
    """Widen strokes by about `by` pixels (a grey-level dilation), padding so that nothing is cut off. A
    square maximum filter is separable: scipy's takes a row and a column pass, where Pillow's MaxFilter
    visits the whole square (the same result, about a hundred times slower for the wide filters of a whole
    number's ink)."""
    size = 1 + 2 * max(1, round(by / 2))
    return ndimage.maximum_filter(np.pad(ink, size // 2), size=size, mode="constant", cval=0)


def _extent(mask):
    """Row and column slices around the True pixels of `mask`, or (None, None) when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None, None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _centre_by_mass(digit):
    """Place `digit` (at most 20x20) in a 28x28 frame so that its centre of mass is the frame's centre."""
    height, width = digit.shape
    total = float(digit.sum())  # Python floats from here: numpy's scalar arithmetic costs ~1 us a step
    centre_y = float(digit.sum(axis=1) @ np.arange(height)) / total
    centre_x = float(digit.sum(axis=0) @ np.arange(width)) / total
    top = min(max(round(SIDE / 2 - centre_y), 0), SIDE - height)
    left = min(max(round(SIDE / 2 - centre_x), 0), SIDE - width)
    framed = np.zeros((SIDE, SIDE), dtype=np.float32)
    framed[top : top + height, left : left + width] = digit
    return np.rint(framed * 255).astype(np.uint8)
