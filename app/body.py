"""The request body, read whole before any work on it starts, within a time that grows with its size.

Under gunicorn's gevent workers a slow upload waits in its own greenlet, and the worker answers other
requests meanwhile; once the body is in, the work on it runs without yielding, so REQUEST_TIMEOUT
(app/deadline.py) times the work alone. A body has BODY_TIMEOUT seconds, plus one second for every
BODY_MIN_RATE bytes it holds: 10 s + 75 s for a 1.5 MB photo at the defaults, which a phone on a poor
link (100 KB/s) sends in 15 s. One that takes longer is answered 408 and its connection closed. Served
without gevent (Flask's test client), the body is read as it comes.

The bodies still arriving are held in memory, never on disk, and together they may hold at most
UPLOAD_MEMORY bytes in a worker (each counted at its declared length, or MAX_CONTENT_LENGTH when sent in
chunks): a body that would go over is answered 503 `busy` with a Retry-After, before any of it is read,
and its connection closed. Without the bound, enough slow uploads would fill the dyno's memory.
"""

import contextlib

from flask import current_app, request
from gevent import Timeout, monkey

from app.errors import ApiError


class Busy(ApiError):
    headers = (("Retry-After", "2"),)

    def __init__(self):
        super().__init__(503, "busy", "the service is receiving too many uploads at once: send it again in a few "
                                      "seconds")


class BodyTimeout(ApiError):
    def __init__(self, seconds):
        super().__init__(408, "request_timeout", f"the request body did not arrive within {seconds:.0f} s: send it "
                                                  "again, or a smaller image, on a faster connection")


class Arriving:
    """The bytes that the bodies still arriving in this process may take, counted as each begins."""

    def __init__(self, limit):
        self.limit, self.held = limit, 0

    @contextlib.contextmanager
    def holding(self, size):
        if self.held + size > self.limit:
            raise Busy()
        self.held += size
        try:
            yield
        finally:
            self.held -= size


def register_body_reading(app):
    arriving = Arriving(app.config["UPLOAD_MEMORY"])

    @app.before_request
    def read_whole_body():
        length = request.content_length
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if not (length or chunked) or (length or 0) > limit:
            return  # no body, or one that Flask refuses (413) before reading it
        seconds = current_app.config["BODY_TIMEOUT"] + (length or limit) / current_app.config["BODY_MIN_RATE"]
        with arriving.holding(length or limit), _deadline(seconds):
            request.get_data(cache=True)


def _deadline(seconds):
    """gevent's own timeout, raising the 408 when it expires, where gevent serves; nothing otherwise."""
    if not monkey.is_module_patched("socket"):
        return contextlib.nullcontext()
    return Timeout(seconds, BodyTimeout(seconds))
