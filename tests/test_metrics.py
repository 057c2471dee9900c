"""GET /metrics (Prometheus), liveness and readiness, through the Flask client (one process; the
multi-worker totals are checked under real gunicorn in test_gunicorn.py)."""

import io
import re

import numpy as np

from app import create_app
from tests.images import draw_digit, draw_number, encode, mnist_style


def sample(text, name, **labels):
    """The value of one sample in Prometheus text format (0 when it is absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def scrape(client):
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def test_metrics_count_requests_answers_batches_and_low_confidence(client, app):
    app.config["LOW_CONFIDENCE"] = 0.8  # the overlaid 1 and 7 below reads under 0.8 (test_recognize.py)
    before = scrape(client)
    pictures = [(io.BytesIO(encode(mnist_style(digit))), f"{digit}.png") for digit in (3, 3, 8)]
    assert client.post("/recognize.json", data={"image": pictures}).status_code == 200
    overlaid = mnist_style(1)
    overlaid.paste(mnist_style(7), mask=mnist_style(7))  # a 1 and a 7 drawn over each other: unsure
    assert client.post("/recognize.json", data={"image": (io.BytesIO(encode(overlaid)), "17.png")}).status_code == 200
    assert client.post("/recognize.json", data=b"junk", content_type="image/png").status_code == 400
    after = scrape(client)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("digit_recognition_predictions_total", digit="3") == 2
    assert sum(grew("digit_recognition_predictions_total", digit=str(digit)) for digit in range(10)) == 4  # and 1+7
    assert grew("digit_recognition_requests_total", method="POST", endpoint="/recognize.json", status="200") == 2
    assert grew("digit_recognition_requests_total", method="POST", endpoint="/recognize.json", status="400") == 1
    assert grew("digit_recognition_batch_images_bucket", le="2.0") == 2  # the two single images, not the 3
    assert grew("digit_recognition_batch_images_count") == 3
    assert grew("digit_recognition_request_duration_seconds_count", endpoint="/recognize.json") == 3
    version = app.extensions["predictor"].version
    assert sample(after, "digit_recognition_model_info", version=version) == 1
    assert grew("digit_recognition_low_confidence_predictions_total") == 1


def test_metrics_count_refusals_and_each_digit_of_a_number(client):
    before = scrape(client)
    letter = encode(draw_digit("H", (300, 300), 220, 16))
    assert client.post("/recognize.json", data=letter, content_type="image/png").status_code == 422
    assert client.post("/read.json", data=encode(draw_number("424")[0]), content_type="image/png").status_code == 200
    after = scrape(client)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("digit_recognition_refusals_total", code="not_a_digit") == 1
    assert grew("digit_recognition_predictions_total", digit="4") == 2
    assert grew("digit_recognition_predictions_total", digit="2") == 1
    assert grew("digit_recognition_requests_total", method="POST", endpoint="/read.json", status="200") == 1
    assert grew("digit_recognition_requests_total", method="POST", endpoint="/recognize.json", status="422") == 1


def test_unknown_paths_share_one_label_so_scanners_cannot_grow_the_metrics(client):
    for path in ("/wp-admin", "/.env", "/a/b/c"):
        client.get(path)
    text = scrape(client)
    assert "wp-admin" not in text and ".env" not in text
    assert sample(text, "digit_recognition_requests_total", method="GET", endpoint="unmatched", status="404") >= 3


def test_liveness_and_readiness_are_told_apart(client, app, monkeypatch):
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert client.get("/readyz").get_json() == {"status": "ready",
                                                "model_version": app.extensions["predictor"].version}
    predictor = app.extensions["predictor"]
    monkeypatch.setattr(predictor, "predict", lambda digits: np.eye(10)[[7] * len(digits)])
    response = client.get("/readyz")  # a model that reads 7 for the check digit is alive, but not ready
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "not_ready"
    assert client.get("/healthz").status_code == 200


def test_the_start_up_warm_up_request_is_not_counted(client):
    before = scrape(client)
    create_app({"TESTING": True})  # reads a 1 through the whole stack before it serves
    after = scrape(client)
    for name, labels in [("digit_recognition_requests_total", {"method": "POST", "endpoint": "/recognize.json",
                                                               "status": "200"}),
                         ("digit_recognition_predictions_total", {"digit": "1"}),
                         ("digit_recognition_batch_images_count", {})]:
        assert sample(after, name, **labels) == sample(before, name, **labels), name
