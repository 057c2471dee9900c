"""One log line per request, with the client's address and a request id that the response echoes (Heroku's
router sends one)."""

import logging
import re
import time
import uuid

from flask import current_app, g, request

log = logging.getLogger("digit_recognition.requests")

CLIENT_ID = re.compile(r"^[\w.:@/+=-]{1,200}$")


def register_request_log(app):
    @app.before_request
    def start():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if CLIENT_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def finish(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        milliseconds = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        response.headers["X-Request-ID"] = request_id
        response.headers["X-Model-Version"] = current_app.extensions["predictor"].version
        log.info("%s %s %d %.1fms%s client=%s request_id=%s", request.method, request.path, response.status_code,
                 milliseconds, _answered(g.get("answer")), request.remote_addr, request_id)
        return response


def _answered(answer):
    """The log's words for one image's answer: its digit or its number, and the confidence."""
    if answer is None:
        return ""
    kind = "number" if "number" in answer else "digit"
    return f" {kind}={answer[kind]} confidence={answer['confidence']:.3f}"
