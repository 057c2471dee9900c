"""The request body, read whole before any work on it starts, within a time that grows with its size.

Under gunicorn's gevent workers a slow upload waits in its own greenlet, and the worker answers other
requests meanwhile; once the body is in, the work on it runs without yielding, so REQUEST_TIMEOUT
(app/deadline.py) times the work alone. A body has BODY_TIMEOUT seconds, plus one second for every
BODY_MIN_RATE bytes it holds: 10 s + 75 s for a 1.5 MB photo at the defaults, which a phone on a poor
link (100 KB/s) sends in 15 s. One that takes longer is answered 408 and its connection closed. Served
without gevent (Flask's test client), the body is read as it comes.

The bodies still arriving are held in memory, never on disk, and together they may hold at most
UPLOAD_MEMORY bytes in a worker: a body whose declared length does not fit in what the others have
taken is answered 503 `busy` with a Retry-After before any of it is read, one whose bytes would take
them past it as it arrives is answered the same, and either's connection is closed. Without the bound,
enough slow uploads would fill the dyno's memory.
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
    """The bytes of the bodies still arriving in this process, counted as they arrive: a body is let in only
    when its declared length fits in what they leave of `limit`, and refused (Busy) wherever its bytes would
    take them past it, as others grow meanwhile. Counting bytes that came, not lengths declared, keeps a
    client that declares large bodies and sends nothing from holding anything."""

    def __init__(self, limit):
        self.limit, self.held = limit, 0

    def admit(self, length):
        if self.held + length > self.limit:
            raise Busy()

    def take(self, size):
        self.admit(size)
        self.held += size

    def give_back(self, size):
        self.held -= size


class CountedInput:
    """A WSGI input stream whose bytes count in `arriving` as they are read."""

    def __init__(self, stream, arriving):
        self._stream, self._arriving, self.taken = stream, arriving, 0

    def read(self, size=-1):
        return self._counted(self._stream.read(size))

    def readline(self, size=-1):
        return self._counted(self._stream.readline(size))

    def _counted(self, data):
        self._arriving.take(len(data))
        self.taken += len(data)
        return data


def register_body_reading(app):
    arriving = Arriving(app.config["UPLOAD_MEMORY"])

    @app.before_request
    def read_whole_body():
        length = request.content_length
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if not (length or chunked) or (length or 0) > limit:
            return  # no body, or one that Flask refuses (413) before reading it
        arriving.admit(length or 0)
        seconds = current_app.config["BODY_TIMEOUT"] + (length or limit) / current_app.config["BODY_MIN_RATE"]
        request.environ["wsgi.input"] = counted = CountedInput(request.environ["wsgi.input"], arriving)
        try:
            with _deadline(seconds):
                request.get_data(cache=True)
        finally:
            arriving.give_back(counted.taken)


def _deadline(seconds):
    """gevent's own timeout, raising the 408 when it expires, where gevent serves; nothing otherwise."""
    if not monkey.is_module_patched("socket"):
        return contextlib.nullcontext()
    return Timeout(seconds, BodyTimeout(seconds))
