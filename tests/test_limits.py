"""REQUEST_TIMEOUT: a request over its time is stopped with a JSON 503, and its alarm never reaches a later one."""

import io
import signal
import time

from PIL import Image

from app import create_app
from tests.images import encode, paper_photo


def test_a_request_over_the_time_limit_is_a_503_and_the_worker_goes_on():
    client = create_app({"TESTING": True, "REQUEST_TIMEOUT": 0.001}).test_client()
    photos = [(io.BytesIO(encode(paper_photo(digit, seed=digit), "JPEG")), f"{digit}.jpg") for digit in range(8)]
    response = client.post("/recognize.json", data={"image": photos})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "timeout"
    assert "Traceback" not in response.get_data(as_text=True)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left to stop a later request


def test_no_alarm_outlives_the_request_that_set_it(client):
    assert upload_photo(client, 4).get_json()["digit"] == 4
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert client.get("/healthz").status_code == 200
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_request_timeout_of_0_sets_no_alarm_at_all(monkeypatch):
    client = create_app({"TESTING": True, "REQUEST_TIMEOUT": 0}).test_client()
    alarms = []
    real_open = Image.open

    def open_and_look_at_the_alarm(*args, **kwargs):
        alarms.append(signal.getitimer(signal.ITIMER_REAL))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_and_look_at_the_alarm)
    assert upload_photo(client, 6).get_json()["digit"] == 6
    assert alarms and all(alarm == (0.0, 0.0) for alarm in alarms)


def upload_photo(client, digit):
    photo = encode(paper_photo(digit), "JPEG")
    return client.post("/recognize.json", data={"image": (io.BytesIO(photo), f"{digit}.jpg")})


def test_the_time_limit_leaves_ordinary_requests_alone(client):
    assert upload_photo(client, 4).get_json()["digit"] == 4


def test_a_timeout_inside_the_image_decoder_is_still_a_503(monkeypatch):
    client = create_app({"TESTING": True, "REQUEST_TIMEOUT": 0.05}).test_client()
    slow_open = Image.open

    def open_slowly(*args, **kwargs):  # a decoder that is still working when the time is up
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            pass
        return slow_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_slowly)
    response = client.post("/recognize.json", data=encode(paper_photo(2)), content_type="image/png")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "timeout"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # the replaced answer keeps its headers
