"""The images of a recognition request, sent as multipart, JSON base64 or a raw image body, and the answer
to it: shared by POST /recognize.json and POST /read.json, with the `model_input` option they both take."""

import base64
import binascii
import io
import re

from flask import current_app, g, jsonify, request
from PIL import Image

from app.errors import ApiError
from app.metrics import observe_answers

DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
RAW_TYPES = ("application/octet-stream",)
HOW_TO_SEND = ("send the image as a multipart field named 'image', as JSON {\"image\": \"<base64>\"}, "
               "or as the body with Content-Type image/png (or another image type)")


def wants_model_input():
    """`?model_input=true` adds to each answer the 28x28 picture the model read, as a PNG data URL."""
    value = request.args.get("model_input", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", f"model_input must be true or false, not {value[:20]!r}")
    return value in ("true", "1")


def png_data_url(digit):
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def read_images():
    """The request's images (bytes, or the ApiError that one could not be read with), and whether they are
    a batch (whose answer is a list)."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        files = request.files.getlist("image")
        if not files:
            raise ApiError(400, "no_image", f"no file field named 'image' was sent: {HOW_TO_SEND}")
        _within_batch_limit(len(files))
        return [file.read() for file in files], len(files) > 1
    if mimetype == "application/json":
        return _from_json(_json_body())
    if mimetype.startswith("image/") or mimetype in RAW_TYPES:
        return [request.get_data()], False
    if not mimetype and not request.content_length:
        raise ApiError(400, "no_image", f"no image was sent: {HOW_TO_SEND}")
    raise ApiError(415, "unsupported_media_type", f"Content-Type {mimetype or '(none)'} is not accepted: {HOW_TO_SEND}")


def respond(results, is_batch):
    """The response to a request whose images each got an answer or an ApiError: a batch answers every
    image in a list; one image answers alone, or raises its error."""
    answers = [{"error": result.as_json()} if isinstance(result, ApiError) else result for result in results]
    observe_answers(answers)
    if is_batch:
        return jsonify(predictions=answers)
    if isinstance(results[0], ApiError):
        raise results[0]
    g.answer = answers[0]
    return jsonify(answers[0])


def _within_batch_limit(count):
    """Refuse a batch over MAX_BATCH before any of its images is read or decoded."""
    limit = current_app.config["MAX_BATCH"]
    if count > limit:
        raise ApiError(413, "too_many_images", f"{count} images sent: at most {limit} per request")


def _json_body():
    """The parsed JSON body, or None when it is not JSON. JSON nested deeper than Python's parser can
    follow raises RecursionError, not the ValueError that `silent` covers, so it is caught here."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _from_json(body):
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", 'the body is not a JSON object: send {"image": "<base64>"}')
    if isinstance(body.get("image"), str):
        return [_decode_base64(body["image"], "image")], False
    if isinstance(body.get("images"), list) and body["images"]:
        _within_batch_limit(len(body["images"]))
        if not all(isinstance(item, str) for item in body["images"]):
            raise ApiError(400, "invalid_json", '"images" must be a list of base64 strings')
        return [_decode_base64(item, f"images[{i}]") for i, item in enumerate(body["images"])], True
    raise ApiError(400, "no_image", 'the JSON has no "image" string or "images" list of base64 strings')


def _decode_base64(text, field):
    """Base64, bare or as a data URL (what a canvas's toDataURL() gives); an ApiError if it is neither."""
    match = DATA_URL.match(text)
    payload = text[match.end():] if match else text
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        return ApiError(400, "invalid_base64", f"{field} is not valid base64 (or a base64 data URL)")
