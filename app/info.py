"""What the service is and whether it is up: /healthz, /model.json, /openapi.json and the JSON index."""

import json
from pathlib import Path

from flask import Blueprint, current_app, jsonify, url_for

bp = Blueprint("info", __name__)

OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())


def service_index():
    """Where the endpoints are: GET / answers this to clients that ask for JSON."""
    return jsonify(
        service="digit-recognition",
        model_version=current_app.extensions["predictor"].version,
        recognize=url_for("recognize.recognize"),
        health=url_for("info.health"),
        model_card=url_for("info.model_card"),
        openapi=url_for("info.openapi"),
    )


@bp.get("/healthz")
def health():
    """The app only starts once the model is loaded and checked, so answering means ready."""
    return jsonify(status="ok", model_version=current_app.extensions["predictor"].version)


@bp.get("/model.json")
def model_card():
    return jsonify(current_app.extensions["predictor"].card)


@bp.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)
