"""REQUEST_TIMEOUT: a request still working after this many seconds is stopped with a JSON 503.

A sync gunicorn worker handles each request on its main thread, so SIGALRM can interrupt it between
two Python steps (a single long step inside a C library, such as decoding one huge image, finishes
first). Gunicorn's own 30 s timeout, which kills the worker, stays the backstop; this limit sits below it
so that the client gets an answer and the worker lives. Off in threads other than the main one, where
signals cannot be used (a threaded development server).
"""

import signal
import threading

from flask import current_app, g

from app.errors import ApiError, error_response


class RequestTimeout(ApiError):
    def __init__(self, seconds):
        super().__init__(503, "timeout", f"the request took longer than {seconds:g} s and was stopped: "
                                         "send fewer or smaller images")


def register_deadline(app):
    if _on_main_thread():  # a signal handler can only be installed there: once per process
        signal.signal(signal.SIGALRM, _expire)

    @app.before_request
    def arm():
        seconds = current_app.config["REQUEST_TIMEOUT"]
        if seconds > 0 and _on_main_thread() and signal.getsignal(signal.SIGALRM) is _expire:
            signal.setitimer(signal.ITIMER_REAL, seconds)

    @app.after_request
    def disarm_and_answer_late_requests_with_503(response):
        """Registered last, so run first of the after-request steps: none of the others is interrupted.
        The timeout may have been caught on its way out (a decoder's catch-all turns it into 'not an
        image'): whatever the view made of it, the answer is the 503."""
        disarm()
        late = g.get("deadline_passed")
        if late and response.status_code != 503:
            return error_response(late.status, late.code, late.message)
        return response

    @app.teardown_request
    def disarm(error=None):
        if _on_main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)


def _expire(signum, frame):
    g.deadline_passed = RequestTimeout(current_app.config["REQUEST_TIMEOUT"])
    raise g.deadline_passed


def _on_main_thread():
    """Whether this runs on the process's main OS thread, where signals are delivered: every greenlet of a
    gevent worker does (their `current_thread()` is not the main thread's object, their native id is)."""
    return threading.get_native_id() == threading.main_thread().native_id
