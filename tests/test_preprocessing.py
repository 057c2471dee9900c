"""Preprocessing: every way a picture arrives ends as the same MNIST-convention 28x28 digit."""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from app import DEFAULTS
from app.preprocessing import (ImageTooLarge, InvalidImage, NoDigit, decode, frame_digit, preprocess,
                               to_model_input)
from tests.images import draw_digit, encode, paper_photo, pen_drawing, png_header_only, ring

LIMIT = DEFAULTS["MAX_IMAGE_PIXELS"]


def white_on_black(digit=4, size=(280, 280), box=200, stroke=18, offset=(0, 0)):
    return draw_digit(digit, size, box, stroke, offset=offset)


def centre_of_mass(digit):
    weights = digit.astype(np.float64)
    ys, xs = np.mgrid[0:28, 0:28]
    return (ys * weights).sum() / weights.sum(), (xs * weights).sum() / weights.sum()


def assert_mnist_convention(digit):
    """Light ink on black, longest side 20 px, centre of mass within a pixel of the frame's centre."""
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit.max() == 255
    border = np.concatenate([digit[0], digit[-1], digit[:, 0], digit[:, -1]])
    assert border.max() < 64, "the background is dark"
    rows = np.flatnonzero(digit.max(axis=1) > 0)
    cols = np.flatnonzero(digit.max(axis=0) > 0)
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) in (20, 21)
    y, x = centre_of_mass(digit)
    assert abs(y - 14) <= 1 and abs(x - 14) <= 1


def assert_same_digit(a, b, tolerance=0.9):
    """Two 28x28 results show the same strokes: their pixel correlation is high, allowing a 1 px shift."""
    correlation = max(np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel().astype(float), b.ravel().astype(float))[0, 1]
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert correlation > tolerance, f"correlation {correlation:.3f}"


@pytest.fixture(scope="module")
def reference():
    return preprocess(encode(white_on_black()), LIMIT)


def test_to_model_input_is_float32_in_0_1_with_a_channel():
    tensor = to_model_input(np.array([[[0, 255] * 14] * 28], dtype=np.uint8))
    assert tensor.shape == (1, 28, 28, 1) and tensor.dtype == np.float32
    assert tensor.min() == 0.0 and tensor.max() == 1.0


def test_the_reference_follows_mnist_convention(reference):
    assert_mnist_convention(reference)


def test_framing_an_already_framed_digit_changes_nothing(reference):
    np.testing.assert_array_equal(frame_digit(reference / np.float32(255)), reference)


@pytest.mark.parametrize("size, box, offset", [
    ((1200, 900), 40, (-400, 300)),  # tiny and off-centre in a large frame
    ((200, 200), 200, (0, 0)),  # cropped tight to its ink
    ((28, 28), 20, (0, 0)),  # MNIST-sized
])
def test_any_size_and_placement_frames_the_same(reference, size, box, offset):
    framed = preprocess(encode(white_on_black(size=size, box=box, stroke=max(2, box // 11), offset=offset)), LIMIT)
    assert_mnist_convention(framed)
    assert_same_digit(framed, reference, 0.8)


@pytest.mark.parametrize("side", [40, 300], ids=["small", "large"])
def test_thick_dark_strokes_cropped_tight_keep_their_full_width(side):
    """Ink covering most of the picture must not be taken for paper: strokes stay solid, not hollowed."""
    with_margin = Image.eval(draw_digit(0, (2 * side, 2 * side), side, side // 4), lambda v: 255 - v)
    tight = with_margin.crop(Image.eval(with_margin, lambda v: 255 - v).getbbox())
    assert np.mean(np.asarray(tight) < 128) > 0.5, "ink covers most of the picture"
    framed = preprocess(encode(tight), LIMIT)
    assert_mnist_convention(framed)
    assert_same_digit(framed, preprocess(encode(with_margin), LIMIT), 0.95)


def test_dark_ink_on_light_paper_becomes_light_on_dark(reference):
    paper = Image.eval(white_on_black(), lambda v: 255 - v)
    framed = preprocess(encode(paper), LIMIT)
    assert_mnist_convention(framed)
    assert_same_digit(framed, reference)


@pytest.mark.parametrize("ink", [(0, 0, 0), (255, 255, 255), (200, 30, 30)])
def test_strokes_on_a_transparent_canvas_are_ink_whatever_their_colour(reference, ink):
    strokes = white_on_black()
    canvas = Image.new("RGBA", strokes.size, ink + (0,))
    canvas.putalpha(strokes)
    framed = preprocess(encode(canvas), LIMIT)
    assert_mnist_convention(framed)
    assert_same_digit(framed, reference)


def as_mode(image, mode):
    """`image` (L, white on black) converted to a Pillow mode, keeping what it shows."""
    if mode == "P-transparent":
        paletted = Image.eval(image, lambda v: 255 - v).convert("P")
        paletted.info["transparency"] = paletted.getpixel((0, 0))
        return paletted, "PNG"
    if mode == "LA":
        return Image.merge("LA", (image, Image.new("L", image.size, 255))), "PNG"
    if mode == "I;16":
        return Image.fromarray(np.asarray(image, dtype=np.uint16) * 257), "PNG"
    if mode == "CMYK":
        return Image.eval(image, lambda v: 255 - v).convert("CMYK"), "JPEG"
    return image.convert(mode), "PNG" if mode != "CMYK" else "JPEG"


@pytest.mark.parametrize("mode", ["1", "L", "P-transparent", "RGB", "RGBA", "LA", "I;16", "CMYK"])
def test_every_pillow_mode_gives_the_same_digit(reference, mode):
    picture, format = as_mode(white_on_black(), mode)
    data = encode(picture, format)
    if mode == "I;16":
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
    framed = preprocess(data, LIMIT)
    assert_mnist_convention(framed)
    assert_same_digit(framed, reference)


def test_a_16_bit_image_is_scaled_not_clipped():
    faint = np.asarray(white_on_black(), dtype=np.uint16) * 20  # at most 5100 of 65535: dark, but visible
    framed = preprocess(encode(Image.fromarray(faint)), LIMIT)
    assert_mnist_convention(framed)


def test_exif_orientation_is_applied(reference):
    sideways = white_on_black().rotate(90, expand=True)  # stored rotated; the EXIF tag says how to turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    framed = preprocess(encode(sideways.convert("RGB"), "JPEG", exif=exif, quality=95), LIMIT)
    assert_same_digit(framed, reference)


def test_an_animated_image_is_read_from_its_first_frame(reference):
    frames = [white_on_black(4), white_on_black(7)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert_same_digit(preprocess(data, LIMIT), reference)


def test_a_photo_with_uneven_light_and_noise_gives_clean_strokes():
    framed = preprocess(encode(paper_photo(3), "JPEG", quality=80), LIMIT)
    assert_mnist_convention(framed)
    clean = preprocess(encode(draw_digit(3, (2400, 1800), 990, 63, offset=(144, -72))), LIMIT)
    assert_same_digit(framed, clean, 0.85)
    assert (framed > 0).mean() < 0.3, "no paper texture left around the strokes"


def blank_photo():
    """A sheet of paper photographed: uneven light, sensor noise, JPEG."""
    rng = np.random.default_rng(3)
    light = np.linspace(150, 245, 1600, dtype=np.float32)[None, :, None] * np.ones((1200, 1, 3), dtype=np.float32)
    pixels = light * np.array([1.0, 0.95, 0.6], dtype=np.float32) + rng.normal(0, 6, (1200, 1600, 3))
    return Image.open(io.BytesIO(encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG")))


@pytest.mark.parametrize("picture", [
    Image.new("L", (28, 28), 0),
    blank_photo(),
    Image.new("RGB", (640, 480), (250, 240, 120)),
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)),
    Image.new("1", (50, 50), 1),
], ids=["black", "photo of blank paper", "yellow paper", "transparent", "white 1-bit"])
def test_a_blank_picture_has_no_digit(picture):
    with pytest.raises(NoDigit):
        preprocess(encode(picture), LIMIT)


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"<svg></svg>",
                                  encode(white_on_black())[:200]])
def test_unreadable_bytes_are_invalid_images(data):
    with pytest.raises(InvalidImage):
        decode(data, LIMIT)


def test_too_many_pixels_are_refused_before_decoding():
    with pytest.raises(ImageTooLarge):
        decode(png_header_only(40_000, 40_000), LIMIT)
    with pytest.raises(ImageTooLarge):
        decode(encode(white_on_black()), 280 * 280 - 1)


BOLD_FILLING_16PX = {  # strokes 3 px wide touching every edge, as USPS scanned and stretched its digits
    0: [ring(rx=0.47, ry=0.49)],
    2: [[(0.05, 0.3), (0.2, 0.06), (0.5, 0.0), (0.85, 0.1), (0.92, 0.32), (0.7, 0.55), (0.05, 0.97), (0.97, 0.97)]],
    8: [ring(0.5, 0.26, 0.4, 0.25), ring(0.5, 0.73, 0.47, 0.26)],
}


@pytest.mark.parametrize("digit", BOLD_FILLING_16PX)
def test_a_bold_digit_filling_its_small_frame_is_framed_alike_whatever_its_polarity(digit):
    """Ink that touches every edge and covers half the picture: the edges are no guide to which level is the
    paper; the corners are."""
    picture = pen_drawing(BOLD_FILLING_16PX[digit], 16, 3)
    dark_on_light = preprocess(encode(picture), 10**6)
    light_on_dark = preprocess(encode(ImageOps.invert(picture)), 10**6)
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=2)  # to a grey level or two of rounding
    assert (dark_on_light > 128).mean() < 0.5  # the strokes are the ink, not the paper around them
