"""Every error is JSON, {"error": {"code", "message"}}, with the right status and never a traceback."""

from flask import jsonify
from werkzeug.exceptions import HTTPException

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}


class ApiError(Exception):
    """An error the client can act on: its status, a stable code and a sentence saying what to do."""

    headers = ()  # HTTP headers of its response

    def __init__(self, status, code, message, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details  # more for the client to act on, such as the closest reading of a refused picture

    def as_json(self):
        return {"code": self.code, "message": self.message, **self.details}


def error_response(status, code, message, headers=None, **details):
    response = jsonify(error={"code": code, "message": message, **details})
    response.status_code = status
    response.headers.extend(headers or {})
    return response


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(error):
        return error_response(error.status, error.code, error.message, error.headers, **error.details)

    @app.errorhandler(HTTPException)
    def http_error(error):
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        code = HTTP_CODES.get(error.code, error.name.lower().replace(" ", "_"))
        return error_response(error.code, code, error.description, headers)

    @app.errorhandler(500)
    def internal_error(error):
        # Flask has logged the exception and told Sentry (got_request_exception) before calling this.
        return error_response(500, "internal_error", "the server failed to answer; the error has been logged")
