"""POST /read.json: the number written in each image (one line of digits), for one image or a batch."""

import math

import numpy as np
from flask import Blueprint, current_app

from app.errors import ApiError
from app.predictor import REFUSALS, postprocess
from app.preprocessing import ImageTooLarge, InvalidImage, NoDigit, decode_upright, ink_map
from app.segmentation import TooManyDigits, best_reading, crowded_groups, is_no_number, segment
from app.uploads import HOW_TO_SEND, png_data_url, read_images, respond, wants_model_input

bp = Blueprint("read", __name__)

NOT_A_NUMBER = ("the picture does not look like digits (a letter, a symbol or a drawing?): write or photograph "
                "a number; error.closest holds the digits it looks most like")


@bp.post("/read.json")
def read():
    show_input = wants_model_input()
    images, is_batch = read_images()
    predictor = current_app.extensions["predictor"]
    max_digits = current_app.config["MAX_DIGITS"]
    segmented = [_segmented(data, max_digits) for data in images]
    found = [item for item in segmented if not isinstance(item, ApiError)]  # (ink, segmentation, sizes) each
    probabilities = _predict(predictor, [segmentation for _, segmentation, _ in found])
    # Groups that the model reads as likely several digits are cut however narrow, and read again in one call.
    again = {index: segment(ink, max_digits, split) for index, ((ink, segmentation, _), rows)
             in enumerate(zip(found, probabilities)) if (split := crowded_groups(segmentation, rows))}
    for index, rows in zip(again, _predict(predictor, list(again.values()))):
        found[index] = (found[index][0], again[index], found[index][2])
        probabilities[index] = rows
    answers = iter(zip(found, probabilities))
    results = []  # per image, its answer or the ApiError it gets
    for item in segmented:
        if isinstance(item, ApiError):
            results.append(item)
            continue
        (_, segmentation, size), rows = next(answers)
        digits = best_reading(segmentation, rows)
        refused = is_no_number(segmentation, rows, digits, predictor.refusal_threshold)
        results.append(_answer(digits, refused, size, predictor.refusal_threshold, show_input))
    return respond(results, is_batch)


def _predict(predictor, segmentations):
    """Each segmentation's candidates' probabilities (an array of rows each): the reader's for those within a group
    cut into pieces (touching digits), the classifier's for the rest; one batched call of each for the request."""
    rows = [np.empty((len(segmentation.candidates), len(REFUSALS) + 10)) for segmentation in segmentations]
    pieces = [set(segmentation.cut_candidates()) for segmentation in segmentations]
    for model, of_pieces in ((predictor.predict, False), (predictor.read_pieces, True)):
        chosen = [(index, number) for index, segmentation in enumerate(segmentations)
                  for number in range(len(segmentation.candidates)) if (number in pieces[index]) == of_pieces]
        if chosen:
            read = model(np.stack([segmentations[index].candidates[number].digit for index, number in chosen]))
            for (index, number), row in zip(chosen, read):
                rows[index][number] = row
    return rows


def _segmented(data, max_digits):
    """The picture's ink map, its candidate digits, and the shapes of the ink map and of the uploaded picture
    (upright); or the ApiError that it gets."""
    if isinstance(data, ApiError):
        return data
    if not data:
        return ApiError(400, "no_image", f"the image is empty: {HOW_TO_SEND}")
    try:
        image, (width, height) = decode_upright(data, current_app.config["MAX_IMAGE_PIXELS"])
        ink = ink_map(image)
        segmentation = segment(ink, max_digits)
    except InvalidImage as error:
        return ApiError(400, "invalid_image", str(error))
    except ImageTooLarge as error:
        return ApiError(413, "image_too_large", str(error))
    except NoDigit:
        return ApiError(422, "no_digit", "the image has no ink: write or photograph a number")
    except TooManyDigits as error:
        return ApiError(422, "too_many_digits", str(error))
    if not segmentation.candidates:
        return ApiError(422, "no_digit", "the image has no ink: write or photograph a number")
    return ink, segmentation, (ink.shape, (width, height))


def _answer(digits, refused, size, refusal_threshold, show_input):
    """The reading as the client gets it, or the ApiError of a picture that is not digits (`refused`)."""
    max_digits = current_app.config["MAX_DIGITS"]
    if len(digits) > max_digits:
        return ApiError(422, "too_many_digits", f"the picture holds {len(digits)} digits: at most {max_digits} are read")
    read = []
    for digit in digits:
        answer, _ = postprocess(digit.probabilities, refusal_threshold)
        answer["box"] = _box(digit.candidate.box, size)
        if show_input:
            answer["model_input"] = png_data_url(digit.candidate.digit)
        read.append(answer)
    number = {"number": "".join(str(answer["digit"]) for answer in read),
              "confidence": round(math.prod(answer["confidence"] for answer in read), 6), "digits": read}
    if refused:
        return ApiError(422, "not_a_digit", NOT_A_NUMBER, closest=number)
    return number


def _box(box, size):
    """An ink-map box (x, y, width, height) in the uploaded picture's pixels, after its EXIF orientation."""
    (rows, cols), (width, height) = size
    x, y, box_width, box_height = box
    left, top = math.floor(x * width / cols), math.floor(y * height / rows)
    right = min(math.ceil((x + box_width) * width / cols), width)
    bottom = min(math.ceil((y + box_height) * height / rows), height)
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}
