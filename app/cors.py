"""CORS, off by default: only origins listed in CORS_ORIGINS (comma-separated) may call the API from a
browser page of their own. The service's own page is same-origin and needs none of it."""

from flask import request

ALLOWED_HEADERS = "Content-Type, X-Request-ID"
EXPOSED_HEADERS = "X-Request-ID, X-Model-Version"


def register_cors(app):
    allowed = {origin.strip().rstrip("/") for origin in app.config["CORS_ORIGINS"].split(",") if origin.strip()}

    @app.after_request
    def allow_listed_origins(response):
        if not allowed:
            return response
        origin = request.headers.get("Origin", "")
        response.vary.add("Origin")
        if origin in allowed or "*" in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if request.method == "OPTIONS":  # a preflight: Flask has answered it with the route's methods
                response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "POST")
                response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        return response
