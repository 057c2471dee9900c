"""digit-recognition: a JSON API that reads the handwritten digit in an uploaded image."""

import io
import logging
import os
from pathlib import Path

from flask import Flask, Request
from PIL import Image
from werkzeug.middleware.proxy_fix import ProxyFix

from app import body, cors, deadline, errors, info, metrics, monitoring, page, read, recognize, request_log
from app.predictor import CHECK_DIGIT, Predictor

DEFAULTS = {
    "MODEL_PATH": str(Path(__file__).resolve().parents[1] / "model" / "model.h5"),
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 16_000_000,  # decoded pixels: a 16 MP RGBA PNG peaks near 200 MB in a worker
    "MAX_BATCH": 64,
    "MAX_DIGITS": 16,
    "SENTRY_DSN": "",
    "SENTRY_ENVIRONMENT": "production",
    "REQUEST_TIMEOUT": 10.0,
    "BODY_TIMEOUT": 10.0,
    "BODY_MIN_RATE": 20_000.0,  # bytes a second
    "UPLOAD_MEMORY": 16 * 1024 * 1024,  # bytes that the bodies still arriving may hold in a worker, together
    "LOW_CONFIDENCE": 0.5,
    "CORS_ORIGINS": "",
    "LOG_LEVEL": "INFO",
    "FORWARDED_HOPS": 1,  # proxies in front that append to X-Forwarded-For: Heroku's router
    "SEND_FILE_MAX_AGE_DEFAULT": 24 * 3600,
}


class InMemoryRequest(Request):
    """Uploads stay in memory, bounded by MAX_CONTENT_LENGTH: Werkzeug would write a file part over
    500 KB to a temporary file, and nothing from an upload is ever written to disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(test_config=None):
    """The application: configuration from DEFAULTS, then the environment, then `test_config`."""
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config.from_mapping(DEFAULTS)
    app.config.from_mapping(_from_environment())
    app.config.from_mapping(test_config or {})
    app.json.sort_keys = False
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if app.config["FORWARDED_HOPS"]:
        # The client's address is the one the last proxy appended; what comes before it, the client wrote.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["FORWARDED_HOPS"], x_proto=0)

    app.extensions["predictor"] = Predictor.load(app.config["MODEL_PATH"])
    errors.register_error_handlers(app)
    metrics.register_metrics(app)
    request_log.register_request_log(app)
    page.register_security_headers(app)
    cors.register_cors(app)
    body.register_body_reading(app)  # before the deadline's alarm: REQUEST_TIMEOUT times the work, not the upload
    deadline.register_deadline(app)  # last: its after-request step runs first
    app.register_blueprint(recognize.bp)
    app.register_blueprint(read.bp)
    app.register_blueprint(info.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(metrics.bp)
    monitoring.init_sentry(app)
    _warm_up(app)
    return app


def _warm_up(app):
    """One request through the whole stack before serving (parsers, preprocessing, model, JSON), so that
    the first user's answer is as fast as the rest. Its log line shows the service working at start-up."""
    buffer = io.BytesIO()
    Image.fromarray(CHECK_DIGIT).save(buffer, "PNG")
    app.test_client().post("/recognize.json", data=buffer.getvalue(),
                           headers={"Content-Type": "image/png", "X-Request-ID": "warm-up"},
                           environ_base={metrics.WARM_UP: True})


def _from_environment():
    """Every DEFAULTS key that is set in the environment, as the type of its default."""
    settings = {}
    for key, default in DEFAULTS.items():
        if key in os.environ:
            try:
                settings[key] = type(default)(os.environ[key])
            except ValueError:
                raise ValueError(f"{key}={os.environ[key]!r} is not a valid {type(default).__name__}") from None
    return settings
