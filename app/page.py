"""The web page at GET / (draw or upload a digit), its static files, and the security headers on every response."""

import hashlib
from pathlib import Path

from flask import Blueprint, current_app, render_template, request, send_file

from app.info import service_index

bp = Blueprint("page", __name__)

STATIC = Path(__file__).parent / "static"
# Static files are cached for a day; the page links them with this digest, so that a deploy is seen at once.
ASSET_VERSION = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(STATIC.iterdir()))).hexdigest()[:12]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@bp.get("/")
def index():
    """The page for browsers; the JSON index of the endpoints for clients that ask for JSON."""
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        return service_index()
    response = current_app.make_response(render_template(
        "index.html", card=current_app.extensions["predictor"].card, asset_version=ASSET_VERSION))
    response.headers["Cache-Control"] = "no-cache"  # revalidate: the page names the model version
    return response


@bp.get("/confusion.png")
def confusion():
    """The model card's picture, from beside the model file the service loaded."""
    picture = Path(current_app.config["MODEL_PATH"]).with_name("confusion.png")
    return send_file(picture, mimetype="image/png", max_age=3600)


def register_security_headers(app):
    @app.after_request
    def secure(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
