"""Sentry for real: events reach a Sentry-speaking server on loopback; an unreachable one changes nothing."""

import gzip
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from app import create_app
from tests.images import encode, mnist_style


class SentryStandIn(BaseHTTPRequestHandler):
    """Accepts envelopes as Sentry's ingest does and keeps their items."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.items.extend(json.loads(line) for line in body.splitlines() if line.startswith(b"{"))
        self.server.paths.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SentryStandIn)
    server.items, server.paths = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def failing_app():
    """Makes an app with Sentry on whose model fails on any 3 (and reads other digits); turns Sentry off
    again afterwards."""
    def make(dsn):
        app = create_app({"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "test", "PROPAGATE_EXCEPTIONS": False})
        predictor = app.extensions["predictor"]
        predict = predictor.predict

        def predict_or_fail(digits):
            probabilities = predict(digits)
            if (probabilities.argmax(axis=1) == 3).any():
                raise RuntimeError("sentry test failure")
            return probabilities

        predictor.predict = predict_or_fail
        return app

    yield make
    sentry_sdk.get_client().close(timeout=1)
    sentry_sdk.init()


def test_an_unhandled_error_reaches_sentry_tagged_with_the_model_version(sentry_server, failing_app):
    app = failing_app(f"http://publickey@127.0.0.1:{sentry_server.server_port}/42")
    response = app.test_client().post("/recognize.json", data=encode(mnist_style(3)), content_type="image/png")
    assert response.status_code == 500 and "sentry test failure" not in response.get_data(as_text=True)
    sentry_sdk.flush(timeout=5)
    events = [item for item in sentry_server.items if "exception" in item]
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["value"] == "sentry test failure"
    assert event["release"] == app.extensions["predictor"].version
    assert event["environment"] == "test"
    assert "data" not in event["request"] and "user" not in event  # the user's picture stays here
    assert set(sentry_server.paths) == {"/api/42/envelope/"}


def test_client_errors_are_not_sent_to_sentry(sentry_server, failing_app):
    app = failing_app(f"http://publickey@127.0.0.1:{sentry_server.server_port}/42")
    client = app.test_client()
    assert client.post("/recognize.json", data=b"junk", content_type="image/png").status_code == 400
    assert client.get("/missing").status_code == 404
    sentry_sdk.flush(timeout=5)
    assert [item for item in sentry_server.items if "exception" in item] == []


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers: the slowest Sentry there is."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("where", ["refused", "silent"])
def test_an_unreachable_sentry_leaves_requests_unaffected(failing_app, silent_server, where):
    port = closed_port() if where == "refused" else silent_server
    client = failing_app(f"http://publickey@127.0.0.1:{port}/42").test_client()
    for _ in range(3):
        failure = client.post("/recognize.json", data=encode(mnist_style(3)), content_type="image/png")
        assert failure.status_code == 500 and failure.get_json()["error"]["code"] == "internal_error"
        answer = client.post("/recognize.json", data={"image": (io.BytesIO(encode(mnist_style(7))), "7.png")})
        assert answer.status_code == 200 and answer.get_json()["digit"] == 7
