"""Turn any picture of one handwritten digit into the MNIST convention the model was trained on.

MNIST digits are light ink on a black background, their longest side scaled to 20 px, placed
in a 28x28 frame with their centre of mass at its centre. The steps, each a function:
`decode` (bytes to a Pillow image, within limits) -> `ink_map` (a float map, 1.0 = ink, whatever
the colours, transparency or lighting) -> `frame_digit` (crop, scale, centre: 28x28 uint8) ->
`to_model_input` (the tensor). Training and serving share `frame_digit` and `to_model_input`.
"""

import io
import warnings
from typing import NamedTuple

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
# What lies beyond the paper in a large picture (a desk, a table's wedges round a tilted sheet, a scan's black
# edge) is a dark region along the picture's border, unlike any stroke of the writing:
BEYOND_CONTACT = 0.1  # along the border for at least this share of the picture's shorter side
BEYOND_THICKNESS = 2.0  # and either at its thickest this many times the boldest stroke inside the paper
BEYOND_SOLID = 0.6  # and filling this share of its bounding box (a strip of desk, not strokes cut by the border),
BEYOND_HUGGING = 1.5  # or in a corner, hugging the border: its area at most this times its contact times its thickness
BEYOND_BORDER = 0.65  # a picture dark along more of its border than this is light writing on a dark ground
# A dark region along the border with writing inside it is the paper in a shadow: it is relit, not painted over.
SHADE_INK = 0.5  # writing in the shade is at most this share of the shade's own level
SHADE_FLOOR = 0.35  # and the shade at least this share of the paper's light (a scanner's black holds no writing)
SHADE_DIMMED = 0.85  # and at most this share: writing on the lit paper beside a desk is not in the shade
SHADE_STROKES = 8  # the writing at least this many squares of its boldest half-width (2 px or more): not specks
SHADE_STROKE_SHARE = 100  # strokes there are taken to be as bold as outside it, or 1/100 of the shorter side
SHADE_WIDEST = 1 / 16  # and its boldest half-width at most this share of the shorter side: not a phone on the desk
# A ruled line of a form or a page spans the picture and is thin beside its length, and the writing is short beside it:
RULE_SPAN = 0.9  # across this share of the picture's height or width at least
RULE_RUN = 32  # straight along a row or a column for this many pixels at a time (or a quarter of the picture)
RULE_LEVEL = 0.05  # faint lines count, down to this share of the darkest ink: a notebook's are far paler than a pen
RULE_TEXTURE = 0.25  # where more of the picture is that faint than this, the paper is textured
RULE_OVER = 0.4  # ink this much darker than most of a line (and a stroke's at least) is writing over it, kept
RULE_THICKNESS = 0.02  # its dark part at most this share of the picture's longer side thick, on average
# The writing is the band of rows where the picture's largest characters stand. Where that band is a small part of
# the picture (a number in a form's cell, a note on a page), what is not writing around it is dropped:
WRITING_SHARE = 0.25  # a band at most this share of the picture's height
WRITING_SPECK = 1 / 25  # characters: pieces at least this share of the picture's shorter side long,
WRITING_DARK = 0.4  # as dark as this on average (a scan's speckle is fainter),
WRITING_CHARACTER = 0.3  # at least this share of the longest character long, and no line:
WRITING_LINE = 0.3  # lines are pieces at least this share of the picture along them,
WRITING_THIN = 8  # whose box is this many times as long as it is wide,
WRITING_RUNS = 0.5  # or with this share of their pixels in straight runs that long, of strokes thinner than
WRITING_FINE = 0.05  # this share of the shorter side, broken by gaps of at most
WRITING_DASH = 0.08  # this share of the height down it (a margin's rule as a scanner breaks it up)
WRITING_GAP = 1.0  # bands of characters closer than this many times the taller one's height are one band
WRITING_NEAR = 0.5  # pieces above or below the band within this share of its height, over its characters, are kept
WRITING_FAR = 0.5  # pieces in the band further than this share of its height beside every character are not
WRITING_TALLER = 2  # and neither are lines down the picture this many times as long as the longest character
EIGHT = np.ones((3, 3), dtype=bool)  # pixels that touch at a corner are joined
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
        if min(plane.shape) >= SMALL_SIDE:
            plane = _paper_only(plane)
        plane = _ink_up(plane)
    small = min(plane.shape) < SMALL_SIDE
    deviation = plane - _background(plane, small)
    ink = _normalise(deviation, small)
    if small and _grain(ink) > GRAIN:  # a small scan of printed texture (a cheque's): its grain is dropped as a photo's
        ink = _normalise(deviation, small=False)
    return ink if small else _writing_only(_without_rules(ink, deviation))


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


def _paper_only(plane):
    """A large picture's luminance with the paper in a shadow relit, and what lies beyond the paper painted over
    in the paper's level: dark regions along the border that hold writing are shade (SHADE_*); those that hold
    none and that no stroke of the writing looks like are a desk, the wedges of a tilted sheet or a scan's
    black edge (BEYOND_*), where the paper is the brighter part of the picture."""
    top = float(plane.max())
    if top <= 0:
        return plane
    ring = _border(plane)
    level = _otsu(plane, top)
    if np.count_nonzero(ring < level) > BEYOND_BORDER * ring.size:
        return plane  # light writing on a dark ground
    cells = _cell_levels(plane, 100 - PAPER_PERCENTILE)  # the paper's light in each cell, where it shows
    paper_cells = cells >= level
    # No dimmer than the dimmest paper it was fitted to: beyond the paper (a scanner's black over half the picture)
    # the fitted surface would fall away with it, and the black would pass for paper in the dark.
    fitted = _lighting(1 - cells, paper_cells)
    if paper_cells.any():
        fitted = np.minimum(fitted, 1 - float(cells[paper_cells].min()))
    lit = 1 - _smooth_cells(fitted, plane.shape)
    shade = np.maximum(lit - plane, 0)  # how far below the paper's light, which may vary over the picture
    if float(shade.max()) < MIN_CONTRAST:
        return plane
    dark = shade >= _otsu(shade, float(shade.max()))
    if dark.all():
        return plane
    labels, count = ndimage.label(dark, structure=EIGHT)
    contact = np.bincount(_border(labels), minlength=count + 1)
    contact[0] = 0
    along = np.flatnonzero(contact >= BEYOND_CONTACT * min(plane.shape)).tolist()
    if not along:
        return plane  # nothing along the border
    depth = ndimage.distance_transform_edt(dark)
    inside = dark & ~np.isin(labels, np.flatnonzero(contact))  # the writing on the paper, clear of the border
    stroke = max(float(depth[inside].max()), 1.0) if inside.any() else 1.0  # the boldest of it
    paper = _quantile(plane[~dark], 0.5)
    boxes = ndimage.find_objects(labels)
    window = 4 * round(max(stroke, min(plane.shape) / SHADE_STROKE_SHARE)) + 3  # twice a bold stroke's width
    for label in list(along):
        box = _grown_box(boxes[label - 1], window, plane.shape)
        width = _writing_in_shade(ndimage.binary_fill_holes(labels[box] == label), plane[box], lit[box], paper, window)
        if width:
            plane = _relit(plane, labels == label, paper, 4 * round(max(width, stroke)) + 3)
            along.remove(label)
    if not inside.any():
        return plane  # nothing written inside the paper to compare the rest with
    corners = set(labels[[0, 0, -1, -1], [0, -1, 0, -1]].tolist())
    beyond = []
    for label in along:
        box = _grown_box(boxes[label - 1], 3, plane.shape)
        region = labels[box] == label
        area, thickest = np.count_nonzero(region), float(depth[box][region].max())
        solid = area >= BEYOND_SOLID * (boxes[label - 1][0].stop - boxes[label - 1][0].start) * (
            boxes[label - 1][1].stop - boxes[label - 1][1].start)
        thick = thickest >= BEYOND_THICKNESS * stroke and solid
        hugging = label in corners and area <= BEYOND_HUGGING * contact[label] * thickest
        if (thick or hugging) and _sharp_edged(region, plane[box], paper):
            beyond.append(label)
    if not beyond:
        return plane
    mask = np.isin(labels, beyond)
    # Grown to all that joins it and is as dark as most of it (where the light falls off across a desk), to
    # the blur at its edges, and to the slivers it cuts off between itself and the border (a desk's grain).
    grown, _ = ndimage.label(mask | (plane <= _quantile(plane[mask], 0.5)), structure=EIGHT)
    mask = ndimage.binary_dilation(np.isin(grown, np.unique(grown[mask])), iterations=2)
    pieces, count = ndimage.label(~mask)
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    sizes[0] = 0
    mask |= np.isin(pieces, np.flatnonzero((sizes > 0) & (sizes < 0.1 * mask.size)))
    return np.where(mask, np.float32(paper), plane)


def _writing_in_shade(region, plane, lit, paper, window):
    """The half-width of the boldest stroke written inside a dark region along the border, or 0 where it holds
    no writing: a shadow on the paper has strokes far darker than their surroundings (SHADE_INK of a closing's
    level, `window` wide), surroundings themselves in the shade (SHADE_DIMMED of the paper's light `lit`), as a
    desk's grain, the wedges of a tilted sheet or a scan's black edge (darker than SHADE_FLOOR) have not."""
    if _quantile(plane[region], 0.5) < SHADE_FLOOR * paper:
        return 0.0
    level = _paper_level(plane, window)
    deep = ndimage.distance_transform_edt(region) > window / 4  # not in the narrow tip of a wedge, nor at its edge
    writing = deep & (plane <= SHADE_INK * level) & (level >= SHADE_FLOOR * paper) & (level <= SHADE_DIMMED * lit)
    if not writing.any():
        return 0.0
    width = float(ndimage.distance_transform_edt(writing).max())
    if np.count_nonzero(writing) < SHADE_STROKES * max(width, 2.0) ** 2 or width > SHADE_WIDEST * min(plane.shape):
        return 0.0  # a speck or two, or something broad lying there
    return width


def _relit(plane, shade, paper, window):
    """`plane` with its shade (a mask), and the blur round its edge, divided by the shade's own level (a closing
    wider than every stroke, which fills them in) and brought up to the paper's: the writing in it as in the light."""
    near = ndimage.binary_dilation(shade, iterations=3)
    box = _grown_box(_extent(near), window, plane.shape)
    level = _paper_level(plane[box], window)
    relit = plane[box] * (paper / np.maximum(level, SHADE_FLOOR * paper))
    plane = plane.copy()
    plane[box] = np.where(near[box], np.clip(relit, plane[box], max(paper, 1e-6)), plane[box])
    return plane


def _border(array):
    """The pixels along a 2-D array's edge, each once."""
    return np.concatenate([array[0], array[-1], array[1:-1, 0], array[1:-1, -1]])


def _grown_box(box, margin, shape):
    """A pair of slices widened by `margin` on every side, within `shape`."""
    return tuple(slice(max(part.start - margin, 0), min(part.stop + margin, size)) for part, size in zip(box, shape))


class _Line(NamedTuple):
    """A straight run of ink along a row or a column: a candidate ruled line."""

    span: int  # its length
    box: tuple  # its bounding box, as slices
    pixels: np.ndarray  # its pixels within the box
    under_stroke: np.ndarray  # those where a stroke runs along it (it is twice as thick there)
    thickness: float  # its typical thickness
    level: float  # its typical ink level


def _without_rules(ink, deviation):
    """A large picture's ink map without the ruled lines of its page or form: straight runs along a row or a
    column across most of the picture (RULE_*), however faint (found in `deviation`, the ink's rise above the
    paper, where the ink map has dropped the faintest), at least twice as long as any piece of the writing, or
    running between two such lines (a box's sides). Where a stroke crosses a line, the stroke is kept."""
    faint, dark = deviation >= RULE_LEVEL * float(deviation.max()), ink >= STROKE_LEVEL
    if np.count_nonzero(faint) > RULE_TEXTURE * faint.size:  # printed texture (a cheque's): what the ink map keeps
        faint = ink >= RULE_LEVEL
    spanning, short = [], []
    for axis, length in ((1, ink.shape[1]), (0, ink.shape[0])):
        labels, _ = ndimage.label(_runs(faint, max(1, min(RULE_RUN, length // 4)), axis), structure=EIGHT)
        for label, box in enumerate(ndimage.find_objects(labels), start=1):
            span = box[axis].stop - box[axis].start
            pixels = labels[box] == label
            thickest = RULE_THICKNESS * max(ink.shape) * span  # for its dark part; three times that, faint and all
            if np.count_nonzero(pixels & dark[box]) > thickest or np.count_nonzero(pixels) > 3 * thickest:
                continue
            across = pixels.sum(axis=1 - axis)  # its thickness at each point along it
            thickness = float(np.median(across[across > 0]))
            merged = across > 2 * thickness + 1
            under_stroke = pixels & (merged[None, :] if axis == 1 else merged[:, None])
            line = _Line(span, box, pixels, under_stroke, thickness, _quantile(ink[box][pixels], 0.5))
            (spanning if span >= RULE_SPAN * length else short).append(line)
    if not spanning:
        return ink
    lined = ndimage.binary_dilation(_painted(ink.shape, [(line.box, line.pixels) for line in spanning]))
    writing = _extents(ndimage.label(dark & ~lined, structure=EIGHT)[0])
    if not writing:
        return ink  # nothing but lines: a 1 from edge to edge, perhaps
    long = [line for line in spanning if line.span >= 2 * max(writing)]
    if not long:
        return ink
    # Shorter lines join them only as a box's sides do, or a form's rules cut off by the picture's edge: between two
    # of them or one and the edge, about as long as the writing, no darker.
    ends = ndimage.binary_dilation(_painted(ink.shape, [(line.box, line.pixels) for line in long]), iterations=2)
    ends[:2], ends[-2:], ends[:, :2], ends[:, -2:] = True, True, True, True
    darkest = max(line.level for line in long) + RULE_OVER
    lines = long + [line for line in spanning + short if RULE_SPAN * max(writing) <= line.span < 2 * max(writing)
                    and line.level < darkest and _between(line.pixels, ends[line.box])]
    bare = [(line.box, line.pixels & ~line.under_stroke) for line in lines]
    rules = ndimage.binary_dilation(_painted(ink.shape, bare))
    # A stroke over a pale line is far darker than most of the line: kept, as is a stroke crossing a dark line.
    over = np.full(ink.shape, np.inf, dtype=np.float32)
    for line in lines:
        near = over[line.box]
        near[line.pixels] = np.minimum(near[line.pixels], max(line.level + RULE_OVER, STROKE_LEVEL))
    over = ink >= ndimage.minimum_filter(over, size=3)
    reach = 4 + int(max(line.thickness for line in lines))  # beyond the thickest line
    kept = np.where(rules & ~(over | _crossing(dark & ~rules, rules, reach)), np.float32(0), ink)
    pieces, count = ndimage.label(kept > 0, structure=EIGHT)
    outside = np.bincount(pieces[~rules], minlength=count + 1)
    return np.where(outside[pieces] > 0, kept, np.float32(0))  # without what is left of the lines alone


def _writing_only(ink):
    """A large picture's ink map with only its writing: where the band of its largest characters is a small part of
    the picture (WRITING_*), what lies above or below the band (a printer's line at a form's foot, a rule cut off by
    the crop), lines down the picture far longer than the characters (a margin's rules, wherever they stop) and
    pieces beside the writing that are no character (specks and broken lines along a scanned page's edge) go."""
    labels, count = ndimage.label(ink >= LINE_INK, structure=EIGHT)
    if count < 2:
        return ink
    boxes = ndimage.find_objects(labels)
    top, bottom, left, right = np.array([(rows.start, rows.stop, cols.start, cols.stop) for rows, cols in boxes]).T
    heights, widths = bottom - top, right - left
    longest = np.maximum(heights, widths)
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    mass = ndimage.sum_labels(ink, labels, np.arange(1, count + 1))
    lines = _line_pieces(labels, count, heights, widths, area)
    characters = ~lines & (longest >= WRITING_SPECK * min(ink.shape)) & (mass >= WRITING_DARK * area)
    if not characters.any():
        return ink
    characters &= longest >= WRITING_CHARACTER * longest[characters].max()
    first, last, members = _writing_band(top, bottom, mass, characters)
    height = last - first
    if height > WRITING_SHARE * ink.shape[0]:
        return ink  # the writing fills the picture: nothing around it to drop
    near = WRITING_NEAR * height
    over = (left < right[members].max()) & (right > left[members].min()) & (bottom > first - near) & (top < last + near)
    beside = np.maximum(np.maximum(left[members][None, :] - right[:, None], left[:, None] - right[members][None, :]), 0)
    dropped = (((bottom <= first) | (top >= last)) & ~(over & ~lines)
               | lines & (heights >= widths) & (longest >= WRITING_TALLER * longest[members].max())
               | ~characters & (beside.min(axis=1) >= WRITING_FAR * height))
    if not dropped.any():
        return ink
    kept = np.concatenate(([False], ~dropped))[labels]
    gone = ndimage.binary_dilation(np.concatenate(([False], dropped))[labels], structure=EIGHT, iterations=2) & ~kept
    return np.where(gone, np.float32(0), ink)


def _line_pieces(labels, count, heights, widths, area):
    """Which labelled pieces are lines: long for the picture and thin, or mostly straight runs of a fine stroke
    along a row or a column (a line with a box's side joined to it), dashed or not (WRITING_LINE to WRITING_DASH)."""
    strokes = labels > 0
    longest, along = np.maximum(heights, widths), np.where(heights >= widths, *strokes.shape)
    straight = (np.minimum(heights, widths) <= np.maximum(3, longest / WRITING_THIN)) & (longest >= WRITING_LINE * along)
    side = max(3, round(WRITING_FINE * min(strokes.shape)))
    fine = strokes & ~ndimage.maximum_filter(ndimage.minimum_filter(strokes, side), side)  # no bold stroke's core
    height, width = strokes.shape
    # Gaps bridged down the picture only: along a row, a line of writing is dashed too.
    dashed = fine | _flanked(fine, 0, max(1, int(WRITING_DASH * height)))
    runs = _runs(dashed, max(3, int(WRITING_LINE * height)), 0) | _runs(fine, max(3, int(WRITING_LINE * width)), 1)
    return straight | (np.bincount(labels[runs & fine], minlength=count + 1)[1:] >= WRITING_RUNS * area)


def _writing_band(top, bottom, mass, characters):
    """The rows (first, one past the last) of the band of characters that holds the tallest writing (the most ink
    where two are as tall), and its characters' indices: characters whose rows overlap are one band, and so are
    bands closer than WRITING_GAP of the taller one's height (a 5's flag drawn apart)."""
    bands = []  # [first, last, indices]
    for index in sorted(np.flatnonzero(characters), key=lambda index: top[index]):
        if bands and top[index] < bands[-1][1]:
            bands[-1][1] = max(bands[-1][1], bottom[index])
            bands[-1][2].append(index)
        else:
            bands.append([top[index], bottom[index], [index]])
    joined = True
    while joined:
        joined = False
        for index, (upper, lower) in enumerate(zip(bands, bands[1:])):
            if lower[0] - upper[1] < WRITING_GAP * max(upper[1] - upper[0], lower[1] - lower[0]):
                bands[index : index + 2] = [[upper[0], max(upper[1], lower[1]), upper[2] + lower[2]]]
                joined = True
                break
    first, last, members = max(bands, key=lambda band: (band[1] - band[0], float(mass[band[2]].sum())))
    return first, last, np.array(members)


def _runs(mask, length, axis):
    """The pixels of `mask` in a straight run of `length` or more along `axis`: a binary opening by a line, from
    running sums (scipy's opening visits the whole line at every pixel)."""
    full = _counts(mask, axis, 0, length) == length  # a run of `length` starts here
    return _counts(full, axis, 1 - length, 1) > 0  # one started within `length` before, this pixel included


def _painted(shape, pieces):
    """A mask of `shape` with the pixels of each (box, its pixels in the box) set."""
    mask = np.zeros(shape, dtype=bool)
    for box, pixels in pieces:
        mask[box] |= pixels
    return mask


def _between(line, ends):
    """Whether a line's two ends (its first and last few pixels along it) both meet `ends` (both in its box)."""
    tall = line.shape[0] >= line.shape[1]
    first, last = (line[:3], line[-3:]) if tall else (line[:, :3], line[:, -3:])
    near_first, near_last = (ends[:3], ends[-3:]) if tall else (ends[:, :3], ends[:, -3:])
    return bool((first & near_first).any() and (last & near_last).any())


def _extents(labels):
    """The longer side of each labelled piece's bounding box."""
    return [max(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in ndimage.find_objects(labels)]


def _crossing(strokes, rules, reach):
    """The pixels of the ruled lines that a stroke crosses: with a stroke within `reach` of them on both sides,
    across the line (above and below a line along a row, either side of one down a column)."""
    return (_flanked(strokes, 0, reach) | _flanked(strokes, 1, reach)) & rules


def _flanked(mask, axis, reach):
    """The pixels with some of `mask` within `reach` of them on both sides along `axis`: a gap of `mask` at most
    `reach` long, bridged."""
    return (_counts(mask, axis, -reach, 0) > 0) & (_counts(mask, axis, 1, reach + 1) > 0)


def _counts(mask, axis, start, stop):
    """For each pixel i, how many of `mask`'s pixels lie from i + start to before i + stop along `axis` (none beyond
    the picture), from a running sum along rows: the same cost whatever the window. Down the columns it runs over
    the transposed mask, as numpy sums along a row several times faster than down a column."""
    if axis == 0:
        return _counts(np.ascontiguousarray(mask.T), 1, start, stop).T
    size, before = mask.shape[1], max(-start, 0)
    padded = np.pad(mask, [(0, 0), (before + 1, max(stop, 0))])
    total = np.cumsum(padded, axis=1, dtype=np.int32)  # pixel i's at i + before + 1, counting it and all before
    return total[:, stop + before : stop + before + size] - total[:, start + before : start + before + size]


def _paper_level(plane, window):
    """The paper's level under every pixel: a closing (the brightest within `window`, then the darkest of those)
    fills in every stroke narrower than the window and keeps the edge of a shadow where it is, up to the
    picture's border, beyond which the picture is taken to go on as its edge is (where a mirrored border would
    close a shadow's edge off)."""
    margin = window // 2 + 1
    padded = np.pad(plane, margin, mode="edge")
    return ndimage.grey_closing(padded, size=(window, window))[margin:-margin, margin:-margin]


def _sharp_edged(region, plane, paper):
    """Whether a dark region ends in an edge, as a desk does at the paper, rather than fading out as the
    light does in a photo's corners: just outside it, the picture is most of the way up to the paper's level."""
    rim = ndimage.binary_dilation(region, iterations=3) & ~region
    inside = _quantile(plane[region], 0.5)
    return bool(rim.any()) and _quantile(plane[rim], 0.5) - inside >= 0.5 * (paper - inside)


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
    ring = _border(plane)
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
    paper = _float_image(_cell_levels(plane, PAPER_PERCENTILE))
    paper = _pixels(paper.filter(ImageFilter.MinFilter(3)), np.float32)
    return _smooth_cells(np.minimum(paper, _lighting(paper) + LIGHTING_TOLERANCE), plane.shape)


def _cell_levels(plane, percentile):
    """The `percentile` of each cell of a GRID-cell grid over the longest side: (rows, cols) levels."""
    height, width = plane.shape
    cell = -(-max(height, width) // GRID)
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.pad(plane, ((0, rows * cell - height), (0, cols * cell - width)), mode="edge")
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    return np.percentile(blocks, percentile, axis=2).astype(np.float32)


def _smooth_cells(levels, shape):
    """A grid of cell levels spread smoothly over a picture of `shape`."""
    return _pixels(_float_image(levels).resize(shape[::-1], Image.Resampling.BILINEAR), np.float32)


def _grain(ink):
    """Faint ink away from every stroke (2 px or more), as a share of the strokes' ink: near nothing for a
    drawing or a clean scan, whose faint pixels are its strokes' edges; most of a textured paper's."""
    strokes = ink >= STROKE_LEVEL
    near = ndimage.maximum_filter(strokes, size=5)
    return np.count_nonzero((ink > 0) & ~near) / max(1, np.count_nonzero(strokes))


def _lighting(levels, kept=None):
    """A smooth (quadratic) surface under a grid of paper levels, fitted so that cells lying well above it,
    covered in ink rather than lit differently, do not pull it up; only `kept` cells, where given."""
    rows, cols = levels.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y, x = y.ravel() / rows, x.ravel() / cols
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = levels.ravel()
    kept = np.ones(values.size, dtype=bool) if kept is None else kept.ravel()
    if np.count_nonzero(kept) < terms.shape[1]:
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
