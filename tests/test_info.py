"""/healthz, /model.json, /openapi.json and the JSON index, and real responses checked against the OpenAPI description."""

import base64
import io
import json

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from app.info import OPENAPI
from tests.conftest import ROOT
from tests.images import draw_digit, draw_number, encode, mnist_style


REGISTRY = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(OPENAPI))


def response_validator(path, method, status):
    """A JSON Schema validator for one documented response, its #/components references resolved."""
    assert str(status) in OPENAPI["paths"][path][method]["responses"]
    pointer = f"/paths/{path.replace('/', '~1')}/{method}/responses/{status}/content/application~1json/schema"
    return jsonschema.Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=REGISTRY)


def test_healthz_says_ok_with_the_model_version(client, app):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "model_version": app.extensions["predictor"].version}
    response_validator("/healthz", "get", 200).validate(response.get_json())


def test_model_json_serves_the_committed_cards(client):
    response = client.get("/model.json")
    assert response.get_json() == {**json.loads((ROOT / "model" / "model.json").read_text()),
                                   "line_reader": json.loads((ROOT / "model" / "lines.json").read_text())}
    response_validator("/model.json", "get", 200).validate(response.get_json())


def test_the_json_index_links_to_every_endpoint(client):
    links = client.get("/", headers={"Accept": "application/json"}).get_json()
    for key in ("recognize", "read", "health", "model_card", "openapi"):
        assert links[key] in OPENAPI["paths"]


def test_openapi_describes_every_route_the_app_serves(client, app):
    assert client.get("/openapi.json").get_json() == OPENAPI
    assert OPENAPI["openapi"].startswith("3.")
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes == set(OPENAPI["paths"])


def requests_and_statuses():
    picture = encode(mnist_style(7))
    encoded = base64.b64encode(picture).decode()
    return [
        ("single", {"data": {"image": (io.BytesIO(picture), "d.png")}}, 200),
        ("batch", {"json": {"images": [encoded, encoded, "bad"]}}, 200),
        ("raw", {"data": picture, "content_type": "image/png"}, 200),
        ("no image", {}, 400),
        ("not an image", {"data": b"text", "content_type": "image/png"}, 400),
        ("blank", {"data": encode(mnist_style(1).point(lambda v: 0)), "content_type": "image/png"}, 422),
        ("wrong type", {"data": "x", "content_type": "text/plain"}, 415),
    ]


def refusals():
    letter = encode(draw_digit("H", (300, 300), 220, 16))
    number = encode(draw_number("42")[0])
    return [
        ("letter", {"data": letter, "content_type": "image/png"}, 422, "not_a_digit"),
        ("number", {"data": number, "content_type": "image/png"}, 422, "several_digits"),
        ("batch with a refusal", {"json": {"images": [base64.b64encode(letter).decode()] * 2}}, 200, None),
    ]


def readings():
    number = encode(draw_number("2026")[0])
    letter = encode(draw_digit("H", (300, 300), 220, 16))
    encoded = base64.b64encode(number).decode()
    return [
        ("number", {"data": {"image": (io.BytesIO(number), "n.png")}}, 200, None),
        ("batch", {"json": {"images": [encoded, base64.b64encode(letter).decode(), "bad"]}}, 200, None),
        ("letter", {"data": letter, "content_type": "image/png"}, 422, "not_a_digit"),
        ("blank", {"data": encode(mnist_style(1).point(lambda v: 0)), "content_type": "image/png"}, 422, "no_digit"),
        ("digits past MAX_DIGITS", {"data": encode(draw_number("1" * 17, height=40, stroke=5)[0]),
                                    "content_type": "image/png"}, 422, "too_many_digits"),
        ("not an image", {"data": b"text", "content_type": "image/png"}, 400, "invalid_image"),
        ("wrong type", {"data": "x", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ]


@pytest.mark.parametrize("name, kwargs, status", requests_and_statuses(), ids=[r[0] for r in requests_and_statuses()])
def test_real_responses_match_the_openapi_description(client, name, kwargs, status):
    response = client.post("/recognize.json", **kwargs)
    assert response.status_code == status
    response_validator("/recognize.json", "post", status).validate(response.get_json())
    assert "X-Model-Version" in response.headers


@pytest.mark.parametrize("path, name, kwargs, status, code",
                         [("/recognize.json", *case) for case in refusals()] + [("/read.json", *case) for case in readings()],
                         ids=[f"recognize {r[0]}" for r in refusals()] + [f"read {r[0]}" for r in readings()])
def test_refusals_and_readings_match_the_openapi_description(client, path, name, kwargs, status, code):
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.get_json()
    response_validator(path, "post", status).validate(response.get_json())
    if code:
        assert response.get_json()["error"]["code"] == code
