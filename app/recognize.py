"""POST /recognize.json: one digit per image, for one image or a batch; pictures that are not one digit
are refused rather than guessed at."""

import numpy as np
from flask import Blueprint, current_app

from app.errors import ApiError
from app.predictor import postprocess
from app.preprocessing import ImageTooLarge, InvalidImage, NoDigit, preprocess
from app.uploads import HOW_TO_SEND, png_data_url, read_images, respond, wants_model_input

bp = Blueprint("recognize", __name__)

REFUSAL_MESSAGES = {
    "not_a_digit": "the picture does not look like a digit (a letter, a symbol or a drawing?): draw or "
                   "photograph one digit; error.closest holds the digit it looks most like",
    "several_digits": "the picture looks like several digits: POST it to /read.json to read them as a number",
}


@bp.post("/recognize.json")
def recognize():
    show_input = wants_model_input()
    images, is_batch = read_images()
    digits, failures = preprocess_all(images)
    predictor = current_app.extensions["predictor"]
    probabilities = iter(predictor.predict(np.stack(digits)) if digits else ())
    framed = iter(digits)
    results = []  # per image, its answer or the ApiError it gets
    for index in range(len(images)):
        if index in failures:
            results.append(failures[index])
            continue
        answer, refusal = postprocess(next(probabilities), predictor.refusal_threshold)
        digit = next(framed)
        if show_input:
            answer["model_input"] = png_data_url(digit)
        results.append(refused(refusal, answer) if refusal else answer)
    return respond(results, is_batch)


def refused(code, closest):
    """The 422 of a picture the model will not read as one digit, with the digit it looks most like."""
    return ApiError(422, code, REFUSAL_MESSAGES[code], closest=closest)


def preprocess_all(images):
    """28x28 digits for the readable images, and an ApiError by index for the others."""
    max_pixels = current_app.config["MAX_IMAGE_PIXELS"]
    digits, failures = [], {}
    for index, data in enumerate(images):
        if isinstance(data, ApiError):
            failures[index] = data
            continue
        if not data:
            failures[index] = ApiError(400, "no_image", f"the image is empty: {HOW_TO_SEND}")
            continue
        try:
            digits.append(preprocess(data, max_pixels))
        except InvalidImage as error:
            failures[index] = ApiError(400, "invalid_image", str(error))
        except ImageTooLarge as error:
            failures[index] = ApiError(413, "image_too_large", str(error))
        except NoDigit as error:
            failures[index] = ApiError(422, "no_digit", str(error))
    return digits, failures
