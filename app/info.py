"""What the service is and whether it is up: /healthz (alive), /readyz (ready), /model.json, /openapi.json
and the JSON index."""

import json
from pathlib import Path

from flask import Blueprint, current_app, jsonify, url_for

from app.errors import ApiError

bp = Blueprint("info", __name__)

OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())


def service_index():
    """Where the endpoints are: GET / answers this to clients that ask for JSON."""
    return jsonify(
        service="digit-recognition",
        model_version=current_app.extensions["predictor"].version,
        recognize=url_for("recognize.recognize"),
        read=url_for("read.read"),
        health=url_for("info.health"),
        ready=url_for("info.ready"),
        metrics=url_for("metrics.metrics"),
        model_card=url_for("info.model_card"),
        openapi=url_for("info.openapi"),
    )


@bp.get("/healthz")
def health():
    """Liveness: the process answers. Cheap, and never touches the model."""
    return jsonify(status="ok", model_version=current_app.extensions["predictor"].version)


@bp.get("/readyz")
def ready():
    """Readiness: the loaded model reads a known digit correctly right now (about a millisecond)."""
    predictor = current_app.extensions["predictor"]
    if not predictor.reads_correctly():
        raise ApiError(503, "not_ready", "the model does not read its check digit correctly")
    return jsonify(status="ready", model_version=predictor.version)


@bp.get("/model.json")
def model_card():
    return jsonify(current_app.extensions["predictor"].card)


@bp.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)
