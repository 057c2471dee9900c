"""POST /read.json: the number written in each image (one line of digits), for one image or a batch."""

import math
from dataclasses import dataclass

import numpy as np
from flask import Blueprint, current_app

from app.errors import ApiError
from app.predictor import REFUSALS, postprocess
from app.line_reader import MARKS, LineReading, chosen_reader, digits_of, greedy_reading
from app.preprocessing import ImageTooLarge, InvalidImage, NoDigit, decode_upright, frame_line, ink_map, line_crop
from app.segmentation import TooManyDigits, best_reading, crowded_groups, is_no_number, segment
from app.uploads import HOW_TO_SEND, png_data_url, read_images, respond, wants_model_input

bp = Blueprint("read", __name__)

NOT_A_NUMBER = ("the picture does not look like digits (a letter, a symbol or a drawing?): write or photograph "
                "a number; error.closest holds the digits it looks most like")


@dataclass
class _Picture:
    """One readable upload on its way through the request: its ink map, its shape and the ink map's, the
    segmenter's candidates (or, for ink cut into more pieces than MAX_DIGITS, the error it gets), and each
    reader's output."""

    ink: np.ndarray
    size: tuple  # (ink-map shape, (width, height) of the upright upload)
    segmentation: object  # a Segmentation, or the too_many_digits ApiError
    rows: list = None  # the classifier's and the reader's probabilities for each candidate
    line: LineReading = None


@bp.post("/read.json")
def read():
    show_input = wants_model_input()
    images, is_batch = read_images()
    predictor = current_app.extensions["predictor"]
    max_digits = current_app.config["MAX_DIGITS"]
    pictures = [_segmented(data, max_digits) for data in images]
    found = [picture for picture in pictures if isinstance(picture, _Picture)]
    cut = [picture for picture in found if not isinstance(picture.segmentation, ApiError)]
    for picture, rows in zip(cut, _predict(predictor, [picture.segmentation for picture in cut])):
        picture.rows = rows
    # Groups that the model reads as likely several digits are cut however narrow, and read again in one call.
    again = [(picture, segment(picture.ink, max_digits, split)) for picture in cut
             if (split := crowded_groups(picture.segmentation, picture.rows))]
    for (picture, segmentation), rows in zip(again, _predict(predictor, [segmentation for _, segmentation in again])):
        picture.segmentation, picture.rows = segmentation, rows
    for picture, line in zip(found, _line_readings(predictor, [picture.ink for picture in found])):
        picture.line = line
    results = []  # per image, its answer or the ApiError it gets
    for picture in pictures:
        if not isinstance(picture, _Picture):
            results.append(picture)
        elif isinstance(picture.segmentation, ApiError):
            results.append(_too_many_pieces(picture))
        else:
            digits = best_reading(picture.segmentation, picture.rows)
            refused = is_no_number(picture.segmentation, picture.rows, digits, predictor.reading_threshold)
            results.append(_answer(digits, refused, picture, predictor.reading_threshold, show_input))
    return respond(results, is_batch)


def _line_readings(predictor, inks):
    """The line reader's reading of each ink map (a LineReading), or None each when none is served."""
    if predictor.line_reader is None:
        return [None] * len(inks)
    crops = [line_crop(ink) for ink in inks]
    framed = [frame_line(ink, crop) for ink, crop in zip(inks, crops)]
    return [LineReading(greedy_reading(rows), rows, ink, *crop, line.shape[1])
            for rows, ink, crop, line in zip(predictor.read_lines(framed), inks, crops, framed)]


def _predict(predictor, segmentations):
    """Each segmentation's candidates' probabilities (an array of rows each): the reader's for those within a group
    cut into pieces (touching digits), the classifier's for the rest; one batched call of each for the request."""
    rows = [np.empty((len(segmentation.candidates), len(REFUSALS) + 10)) for segmentation in segmentations]
    pieces = [set(segmentation.cut_candidates()) for segmentation in segmentations]
    for model, of_pieces in ((predictor.classify, False), (predictor.read_pieces, True)):
        chosen = [(index, number) for index, segmentation in enumerate(segmentations)
                  for number in range(len(segmentation.candidates)) if (number in pieces[index]) == of_pieces]
        if chosen:
            read = model(np.stack([segmentations[index].candidates[number].digit for index, number in chosen]))
            for (index, number), row in zip(chosen, read):
                rows[index][number] = row
    return rows


def _segmented(data, max_digits):
    """The picture (a _Picture) with its ink map and candidate digits; or the ApiError that it gets."""
    if isinstance(data, ApiError):
        return data
    if not data:
        return ApiError(400, "no_image", f"the image is empty: {HOW_TO_SEND}")
    try:
        image, (width, height) = decode_upright(data, current_app.config["MAX_IMAGE_PIXELS"])
        ink = ink_map(image)
    except InvalidImage as error:
        return ApiError(400, "invalid_image", str(error))
    except ImageTooLarge as error:
        return ApiError(413, "image_too_large", str(error))
    except NoDigit:
        return ApiError(422, "no_digit", "the image has no ink: write or photograph a number")
    try:
        segmentation = segment(ink, max_digits)
    except TooManyDigits as error:  # a row of dashes, or ruled lines: the line reader may still read it
        segmentation = ApiError(422, "too_many_digits", str(error))
    else:
        if not segmentation.candidates:
            return ApiError(422, "no_digit", "the image has no ink: write or photograph a number")
    return _Picture(ink, (ink.shape, (width, height)), segmentation)


def _too_many_pieces(picture):
    """The answer to ink cut into more pieces than MAX_DIGITS: the line reader's reading if it is sure of one,
    a refusal if it is sure there is no digit (a row of dashes), else too_many_digits."""
    reader = "segmenter" if picture.line is None else chosen_reader(None, 0.0, False, picture.line)
    if reader == "refuse":
        return ApiError(422, "not_a_digit", NOT_A_NUMBER)
    if reader == "line":
        return _answer([], False, picture, 1.0, False, reader)
    return picture.segmentation


def _answer(digits, refused, picture, refusal_threshold, show_input, reader=None):
    """The reading as the client gets it, or the ApiError of a picture that is not digits: the segmenter's
    digits, or the line reader's where line_reader.chosen_reader picks them (or `reader` says), with the text
    the line reader read and its marks when it read the same digits."""
    max_digits = current_app.config["MAX_DIGITS"]
    line, size = picture.line, picture.size
    number = _segmenter_number(digits, size, refusal_threshold, show_input)
    if reader is None:
        reader = "segmenter" if line is None else chosen_reader(number["number"], number["confidence"], refused, line)
    if reader == "line":
        number, refused = _line_number(line, size), False
    if reader == "refuse" and not refused:  # the line reader is sure it holds no digit: a dash, a row of them
        if len(number["digits"]) > max_digits:  # a row of dashes cut into pieces: no reading worth offering
            return ApiError(422, "not_a_digit", NOT_A_NUMBER)
        return ApiError(422, "not_a_digit", NOT_A_NUMBER, closest=_with_text(number, None, size))
    if len(number["digits"]) > max_digits:
        return ApiError(422, "too_many_digits",
                        f"the picture holds {len(number['digits'])} digits: at most {max_digits} are read")
    number = _with_text(number, line, size)
    if refused:
        return ApiError(422, "not_a_digit", NOT_A_NUMBER, closest=number)
    return number


def _with_text(number, line, size):
    """A reading with its text and its marks: the line reader's where it read the same digits, else the digits.
    Where it read marks, every box is its own, so that no digit's box holds a mark beside it."""
    if line is None or digits_of(line.characters) != number["number"]:
        return {**number, "text": number["number"], "marks": []}
    boxes = [(character.text, _box(box, size)) for character, box in zip(line.characters, line.boxes)
             if character.text != " "]
    marks = [{"mark": text, "box": box} for text, box in boxes if text in MARKS]
    if marks:
        digit_boxes = iter(box for text, box in boxes if text not in MARKS)
        number = {**number, "digits": [{**digit, "box": next(digit_boxes)} for digit in number["digits"]]}
    return {"number": number["number"], "text": line.text, "confidence": number["confidence"],
            "digits": number["digits"], "marks": marks}


def _segmenter_number(digits, size, refusal_threshold, show_input):
    """The segmenter's reading: its digits, each with its probabilities and box, and their joint confidence."""
    read = []
    for digit in digits:
        answer, _ = postprocess(digit.probabilities, refusal_threshold)
        answer["box"] = _box(digit.candidate.box, size)
        if show_input:
            answer["model_input"] = png_data_url(digit.candidate.digit)
        read.append(answer)
    return {"number": "".join(str(answer["digit"]) for answer in read),
            "confidence": round(math.prod(answer["confidence"] for answer in read), 6), "digits": read}


def _line_number(line, size):
    """The line reader's reading in the same shape: each digit's probabilities where it was read surest, its
    box from the columns it was read at, cut to its ink."""
    read = []
    for character, box in zip(line.characters, line.boxes):
        if character.text.isdigit():
            rounded = [round(float(p), 6) for p in line.digit_probabilities(character)]
            read.append({"digit": int(character.text), "confidence": rounded[int(character.text)],
                         "probabilities": rounded, "box": _box(box, size)})
    return {"number": "".join(str(answer["digit"]) for answer in read),
            "confidence": round(math.prod(answer["confidence"] for answer in read), 6), "digits": read}


def _box(box, size):
    """An ink-map box (x, y, width, height) in the uploaded picture's pixels, after its EXIF orientation."""
    (rows, cols), (width, height) = size
    x, y, box_width, box_height = box
    left, top = math.floor(x * width / cols), math.floor(y * height / rows)
    right = min(math.ceil((x + box_width) * width / cols), width)
    bottom = min(math.ceil((y + box_height) * height / rows), height)
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}
