"""POST /recognize.json through the Flask test client, on the committed model."""

import base64
import io
import json
import logging
import struct

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from app import create_app
from tests.images import (SHAPES, draw_digit, draw_number, encode, mnist_style, mnist_style_rgba, paper_photo,
                          png_header_only)


def upload(client, *images, field="image", **kwargs):
    data = {field: [(io.BytesIO(image), f"digit{i}.png") for i, image in enumerate(images)]}
    return client.post("/recognize.json", data=data, content_type="multipart/form-data", **kwargs)


def assert_prediction(answer, digit):
    assert answer["digit"] == digit, answer
    assert answer["confidence"] == max(answer["probabilities"])
    assert len(answer["probabilities"]) == 10
    assert 0.95 < sum(answer["probabilities"]) <= 1 + 1e-4  # less by the small chance that it is no digit


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)


# The original service's own checks, with pictures made here.

def test_a_28x28_rgba_png_of_a_one_reads_as_1(client, app):
    response = upload(client, encode(mnist_style_rgba(1)))
    assert response.status_code == 200
    assert_prediction(response.get_json(), 1)
    assert response.headers["X-Model-Version"] == app.extensions["predictor"].version


def test_a_text_file_named_corrupted_png_is_a_400(client):
    data = {"image": (io.BytesIO(b"this is not a picture\n"), "corrupted.png")}
    assert_error(client.post("/recognize.json", data=data), 400, "invalid_image")


def test_a_large_jpeg_photo_of_a_digit_on_paper_is_read(client):
    photo = paper_photo(3)
    assert min(photo.size) > 1600
    response = upload(client, encode(photo, "JPEG", quality=85))
    assert response.status_code == 200
    assert_prediction(response.get_json(), 3)


@pytest.mark.parametrize("first, second", [(3, 5), (4, 9)])
def test_two_digits_drawn_over_each_other_get_a_low_confidence(client, first, second):
    """Confidence stays honest: clean digits are read surely, a shape between two digits is not."""
    clean = [upload(client, encode(draw_digit(d, (280, 280), 200, 18))).get_json() for d in (first, second)]
    assert [answer["digit"] for answer in clean] == [first, second]
    assert min(answer["confidence"] for answer in clean) > 0.95
    both = ImageChops.lighter(draw_digit(first, (280, 280), 200, 18), draw_digit(second, (280, 280), 200, 18))
    answer = upload(client, encode(both)).get_json()
    answer = answer.get("error", {}).get("closest", answer)  # refused, or read with a confidence as low
    assert answer["confidence"] < 0.85, answer


# What is not one digit is refused, with the closest digit for clients that want a guess anyway.

@pytest.mark.parametrize("shape", SHAPES)
def test_a_drawn_letter_symbol_or_shape_is_never_a_confident_guess(client, shape):
    response = upload(client, encode(draw_digit(shape, (300, 300), 220, 16, ink=0, background=255)))
    answer = response.get_json()
    if response.status_code == 422:
        assert_error(response, 422, "not_a_digit")
        answer = answer["error"]["closest"]
        assert 0 <= answer["digit"] <= 9 and answer["confidence"] == max(answer["probabilities"])
    else:  # too close to a digit to refuse at the card's threshold: then its confidence says so
        assert answer["confidence"] < 0.2, answer


def test_nearly_all_drawn_letters_symbols_and_shapes_are_refused(client):
    statuses = [upload(client, encode(draw_digit(shape, (300, 300), 220, 16, ink=0, background=255))).status_code
                for shape in SHAPES]
    assert statuses.count(422) >= len(SHAPES) - 1, dict(zip(SHAPES, statuses))


@pytest.mark.parametrize("character", "HAKW#")
def test_a_typed_character_in_a_font_training_never_saw_is_refused(client, character):
    picture = Image.new("L", (240, 240), 255)
    ImageDraw.Draw(picture).text((120, 120), character, fill=0, font=ImageFont.load_default(160), anchor="mm")
    assert_error(upload(client, encode(picture)), 422, "not_a_digit")


@pytest.mark.parametrize("text", ["42", "2026", "17"])
def test_a_number_is_refused_as_several_digits_and_sent_to_read_json(client, text):
    response = upload(client, encode(draw_number(text, ink=0, background=255)[0]))
    assert_error(response, 422, "several_digits")
    assert "/read.json" in response.get_json()["error"]["message"]


def test_a_refusal_in_a_batch_holds_its_place(client):
    answers = upload(client, encode(mnist_style(2)), encode(draw_digit("H", (300, 300), 220, 16)),
                     encode(mnist_style(8))).get_json()["predictions"]
    assert_prediction(answers[0], 2)
    assert answers[1]["error"]["code"] == "not_a_digit" and "closest" in answers[1]["error"]
    assert_prediction(answers[2], 8)


def test_no_image_is_a_400(client):
    assert_error(client.post("/recognize.json"), 400, "no_image")
    assert_error(client.post("/recognize.json", data={"other": "x"}, content_type="multipart/form-data"), 400,
                 "no_image")
    assert_error(upload(client, b""), 400, "no_image")


# The three ways to send one image give the same answer.

def test_json_base64_data_url_and_raw_body_answer_like_multipart(client):
    picture = encode(mnist_style(7))
    expected = upload(client, picture).get_json()
    assert_prediction(expected, 7)
    encoded = base64.b64encode(picture).decode()
    assert client.post("/recognize.json", json={"image": encoded}).get_json() == expected
    assert client.post("/recognize.json", json={"image": f"data:image/png;base64,{encoded}"}).get_json() == expected
    assert client.post("/recognize.json", data=picture, content_type="image/png").get_json() == expected
    assert client.post("/recognize.json", data=picture, content_type="application/octet-stream").get_json() == expected


def test_base64_broken_into_lines_as_the_base64_command_prints_it_is_read(client):
    lines = base64.encodebytes(encode(mnist_style(3))).decode()  # 76 characters a line, as `base64 digit.png`
    assert "\n" in lines.strip()
    assert_prediction(client.post("/recognize.json", json={"image": lines}).get_json(), 3)
    assert_prediction(client.post("/recognize.json", json={"image": "data:image/png;base64," + lines}).get_json(), 3)


def photoshop(picture):
    """`picture` as a minimal Photoshop file (one grey channel, raw): a format Pillow reads but cannot write."""
    grey = picture.convert("L")
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, grey.height, grey.width, 8, 1)  # 1 channel of 8 bits, grey
    return header + struct.pack(">IIIH", 0, 0, 0, 0) + grey.tobytes()  # no colour data, resources, layers; raw


@pytest.mark.parametrize("format", ["PPM", "ICO", "TGA", "PSD"])
def test_formats_pillow_reads_but_the_service_does_not_open_are_refused_as_invalid_images(client, format):
    picture = mnist_style(3)
    data = photoshop(picture) if format == "PSD" else encode(picture.convert("RGBA" if format == "ICO" else "L"), format)
    assert Image.open(io.BytesIO(data)).format == format  # Pillow would read it
    assert_error(upload(client, data), 400, "invalid_image")


def test_a_batch_in_which_every_image_fails_answers_each_error_in_its_place(client):
    response = client.post("/recognize.json", json={"images": ["%%%", "", base64.b64encode(b"junk").decode()]})
    assert response.status_code == 200  # the request was read; each of its images failed on its own
    assert [item["error"]["code"] for item in response.get_json()["predictions"]] == [
        "invalid_base64", "no_image", "invalid_image"]


@pytest.mark.parametrize("format, options", [
    ("JPEG", {"quality": 90}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"quality": 90}), ("PNG", {}),
])
def test_every_common_format_is_read(client, format, options):
    picture = mnist_style(4).resize((140, 140), Image.Resampling.BICUBIC)
    assert_prediction(upload(client, encode(picture, format, **options)).get_json(), 4)


def test_dark_ink_on_white_canvas_of_any_size_is_read(client):
    picture = Image.eval(mnist_style(2).resize((400, 300), Image.Resampling.BICUBIC), lambda v: 255 - v)
    assert_prediction(upload(client, encode(picture.convert("RGB"))).get_json(), 2)


def test_dark_strokes_on_a_transparent_canvas_are_read(client):
    strokes = mnist_style(5).resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("RGBA", strokes.size, (0, 0, 0, 0))
    canvas.putalpha(strokes)
    assert_prediction(upload(client, encode(canvas)).get_json(), 5)


# Batches.

def test_a_multipart_batch_answers_in_the_order_sent(client):
    digits = [7, 1, 0, 4, 1, 7]
    response = upload(client, *(encode(mnist_style(d)) for d in digits))
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p["digit"] for p in predictions] == digits


def test_a_json_batch_reports_a_bad_item_in_place_and_reads_the_rest(client):
    blank = encode(Image.new("L", (28, 28), 0))
    items = [base64.b64encode(encode(mnist_style(d))).decode() for d in (3, 0)]
    items[1:1] = [base64.b64encode(b"garbage").decode(), base64.b64encode(blank).decode()]
    response = client.post("/recognize.json", json={"images": items})
    assert response.status_code == 200
    first, garbage, empty, last = response.get_json()["predictions"]
    assert_prediction(first, 3)
    assert garbage == {"error": {"code": "invalid_image", "message": garbage["error"]["message"]}}
    assert empty["error"]["code"] == "no_digit"
    assert_prediction(last, 0)


def test_more_images_than_the_batch_limit_is_a_413():
    client = create_app({"TESTING": True, "MAX_BATCH": 3}).test_client()
    picture = base64.b64encode(encode(mnist_style(1))).decode()
    assert_error(client.post("/recognize.json", json={"images": [picture] * 4}), 413, "too_many_images")
    assert client.post("/recognize.json", json={"images": [picture] * 3}).status_code == 200


# Errors.

def test_a_blank_canvas_is_a_422_not_a_guess(client):
    assert_error(upload(client, encode(Image.new("RGBA", (280, 280), (0, 0, 0, 0)))), 422, "no_digit")
    assert_error(upload(client, encode(Image.new("RGB", (280, 280), "white"))), 422, "no_digit")
    noisy_paper = np.random.default_rng(0).normal(200, 4, (300, 300)).clip(0, 255).astype(np.uint8)
    assert_error(upload(client, encode(Image.fromarray(noisy_paper), "JPEG")), 422, "no_digit")


def test_invalid_base64_is_a_400_or_in_a_batch_that_items_error(client):
    assert_error(client.post("/recognize.json", json={"image": "not base64!"}), 400, "invalid_base64")
    assert_error(client.post("/recognize.json", json={"image": "data:image/png;base64,%%%"}), 400, "invalid_base64")
    batch = client.post("/recognize.json", json={"images": ["%%%", ""]}).get_json()["predictions"]
    assert [item["error"]["code"] for item in batch] == ["invalid_base64", "no_image"]


@pytest.mark.parametrize("body, code", [
    ("[1, 2]", "invalid_json"),  # not an object
    ("{not json", "invalid_json"),  # not JSON at all
    ('{"images": [1]}', "invalid_json"),  # images that are not all strings
    ('{"image": 5}', "no_image"),  # no image string
    ('{"images": []}', "no_image"),  # an empty list
    ("{}", "no_image"),
])
def test_json_without_an_image_is_a_400_with_the_documented_code(client, body, code):
    assert_error(client.post("/recognize.json", data=body, content_type="application/json"), 400, code)


def test_an_unsupported_content_type_is_a_415(client):
    assert_error(client.post("/recognize.json", data="7", content_type="text/plain"), 415, "unsupported_media_type")
    assert_error(client.post("/recognize.json", data="image=7", content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_a_413():
    client = create_app({"TESTING": True, "MAX_CONTENT_LENGTH": 50_000}).test_client()
    big = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)))
    assert len(big) > 50_000
    assert_error(client.post("/recognize.json", data=big, content_type="image/png"), 413, "payload_too_large")
    assert_error(upload(client, big), 413, "payload_too_large")


def test_a_decompression_bomb_is_a_413_before_it_is_decoded(client):
    assert_error(upload(client, png_header_only(40_000, 40_000)), 413, "image_too_large")


def test_an_image_over_the_pixel_limit_is_a_413():

    client = create_app({"TESTING": True, "MAX_IMAGE_PIXELS": 100 * 100}).test_client()
    assert_error(upload(client, encode(mnist_style(1).resize((101, 100)))), 413, "image_too_large")
    assert upload(client, encode(mnist_style(1).resize((100, 100)))).status_code == 200


def test_wrong_method_and_unknown_path_are_json(client):
    response = client.get("/recognize.json")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(client.get("/recognise.json"), 404, "not_found")


def test_an_unexpected_failure_is_a_500_without_a_traceback(app, client, caplog, monkeypatch):
    def fail(digits):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.extensions["predictor"], "predict", fail)
    with caplog.at_level(logging.ERROR):
        response = upload(client, encode(mnist_style(1)))
    assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text  # logged for the operators


# Logging and request ids.

def test_each_request_logs_one_line_with_its_answer_and_echoes_the_request_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="digit_recognition.requests"):
        response = upload(client, encode(mnist_style(1)), headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    lines = [r.getMessage() for r in caplog.records if r.name == "digit_recognition.requests"]
    assert len(lines) == 1
    assert lines[0].startswith("POST /recognize.json 200 ")
    assert "digit=1 confidence=" in lines[0] and lines[0].endswith("request_id=abc-123")


def test_the_log_names_the_client_that_heroku_s_router_saw_not_the_one_the_client_wrote(client, caplog):
    forwarded = {"X-Forwarded-For": "10.9.8.7, 203.0.113.9"}  # what the client claimed, then what the router saw
    with caplog.at_level(logging.INFO, logger="digit_recognition.requests"):
        client.get("/healthz", headers=forwarded, environ_base={"REMOTE_ADDR": "10.1.1.1"})
        create_app({"TESTING": True, "FORWARDED_HOPS": 0}).test_client().get(
            "/healthz", headers=forwarded, environ_base={"REMOTE_ADDR": "10.1.1.1"})
    behind_router, direct = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GET /healthz")]
    assert " client=203.0.113.9 " in behind_router
    assert " client=10.1.1.1 " in direct


def test_a_missing_or_malformed_request_id_is_replaced(client):
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32
    hostile = client.get("/healthz", headers={"X-Request-ID": "<script> " + "y" * 300})
    assert hostile.headers["X-Request-ID"] != generated and len(hostile.headers["X-Request-ID"]) == 32


def test_answers_are_json_numbers_a_client_can_use(client):
    body = json.loads(upload(client, encode(mnist_style(9))).get_data())
    assert isinstance(body["digit"], int) and all(isinstance(p, float) for p in body["probabilities"])


def test_model_input_shows_the_28x28_picture_the_model_read(client):
    response = upload(client, encode(draw_digit(4, (300, 200), 150, 14, ink=0, background=255)),
                      query_string={"model_input": "true"})
    answer = response.get_json()
    assert_prediction(answer, 4)
    prefix = "data:image/png;base64,"
    assert answer["model_input"].startswith(prefix)
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["model_input"][len(prefix):]))))
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    assert seen[0].max() == 0 and seen[:, 0].max() == 0 and seen.max() == 255  # white ink on black, framed
    assert "model_input" not in upload(client, encode(mnist_style(4))).get_json()


def test_model_input_comes_with_each_answer_of_a_batch_and_not_with_its_errors(client):
    answers = upload(client, encode(mnist_style(1)), b"not an image", encode(mnist_style(7)),
                     query_string={"model_input": "1"}).get_json()["predictions"]
    assert [("model_input" in answer, answer.get("digit")) for answer in answers] == [(True, 1), (False, None),
                                                                                     (True, 7)]
    assert answers[0]["model_input"] != answers[2]["model_input"]


@pytest.mark.parametrize("value, shown", [("true", True), ("TRUE", True), ("1", True), ("false", False),
                                          ("False", False), ("0", False)])
def test_model_input_takes_true_false_1_and_0_in_any_case(client, value, shown):
    answer = upload(client, encode(mnist_style(1)), query_string={"model_input": value}).get_json()
    assert answer["digit"] == 1 and ("model_input" in answer) is shown


def test_an_invalid_model_input_value_is_a_400(client):
    assert_error(upload(client, encode(mnist_style(1)), query_string={"model_input": "maybe"}), 400,
                 "invalid_parameter")


def test_a_48_megapixel_phone_jpeg_is_read_but_a_png_that_size_is_refused(client):
    photo = Image.new("L", (8000, 6000), 235)
    photo.paste(draw_digit(3, (3000, 3000), 2400, 160, ink=30, background=235), (2500, 1500))
    data = encode(photo, "JPEG", quality=80)  # decoded at 1/8 scale: about 0.75 MP
    assert_prediction(upload(client, data).get_json(), 3)
    assert_error(upload(client, png_header_only(8000, 6000)), 413, "image_too_large")
