"""Gunicorn settings for Heroku and for local runs: `gunicorn --config gunicorn.conf.py 'app:create_app()'`."""

import ctypes
import gc
import glob
import os
import shutil
import sys
import tempfile
import time

# One compute thread per worker: the workers are the parallelism, and XLA splitting a small convolution
# over threads that the other worker also needs measured ~10% fewer requests/s (scripts/bench.py).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")


LARGE_UPLOAD = 100_000  # bytes: a photo rather than a drawing or an MNIST digit


def release_freed_memory():
    """Hand back to the OS what glibc keeps after importing, loading and compiling (about 30 MB a process)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


# Each worker writes its metrics here and GET /metrics adds them up (prometheus-client's multiprocess
# mode); set before the app, and with it prometheus_client, is imported.
OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="digit-recognition-metrics-")

from app import DEFAULTS  # noqa: E402
from app.predictor import ModelError, checked_card  # noqa: E402
from gunicorn.workers.sync import StopWaiting, SyncWorker  # noqa: E402

import keras  # noqa: E402,F401  imported once here, in the master: the workers share its memory copy-on-write

release_freed_memory()
gc.freeze()  # the master's objects: the workers' garbage collector leaves them, and their pages, shared


class DrainingSyncWorker(SyncWorker):
    """A sync worker that, on SIGTERM, first answers the connections already queued on the listening
    socket, then exits. Gunicorn's own stops at once, and the kernel resets whatever is still queued when
    the last worker closes the socket: on Heroku, an H13 for every request that arrived during a restart
    (benoitc/gunicorn#3397). Draining stops 5 s before graceful_timeout, when the master would SIGKILL.
    Written against gunicorn 27's SyncWorker (pinned); tests/test_gunicorn.py holds it to its promise."""

    drain_until = None

    def handle_exit(self, sig, frame):
        if self.drain_until is None:  # Heroku signals the master and the workers: the first one counts
            self.drain_until = time.monotonic() + max(self.cfg.graceful_timeout - 5, 0)

    def wait(self, timeout):
        if self.drain_until is not None:  # called only once accept() found the queue empty
            raise StopWaiting
        return super().wait(timeout)

    def handle(self, listener, client, addr):
        super().handle(listener, client, addr)
        if self.drain_until is not None and time.monotonic() > self.drain_until:
            self.alive = False


bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = DrainingSyncWorker
timeout = 30  # a request that takes longer is stuck: the worker is replaced
graceful_timeout = 20  # on SIGTERM finish in-flight requests, well inside Heroku's 30 s before SIGKILL
keepalive = 5
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
control_socket_disable = True  # no runtime control interface: nothing uses it, and nothing to guard
forwarded_allow_ips = "*"  # behind Heroku's router, which sets X-Forwarded-For/Proto


def post_fork(server, worker):
    """Start the worker's timeout clock at its birth, so that a worker stuck while it loads the model is
    replaced after `timeout`, as one stuck in a request is. Gunicorn times a worker by a file whose time
    the worker sets from the monotonic clock each time it reports in, first when it starts serving; until
    then the file holds the wall-clock time of its creation, decades ahead of the monotonic clock, and the
    master never times the start-up out (gunicorn 27: workertmp.py, arbiter.murder_workers). Start-up
    takes about 5 s here."""
    worker.tmp.notify()


def post_worker_init(worker):
    """The worker has loaded and warmed up its model."""
    release_freed_memory()


def post_request(worker, req, environ, resp):
    """After a large upload (a photo), hand back the memory its decoding used, which glibc would keep:
    about 20 MB a worker under photo traffic (scripts/loadtest.py), for ~3 ms on a ~25 ms request.
    Keeping large blocks out of the heap instead (mallopt M_MMAP_THRESHOLD) cost 16 ms a photo."""
    if environ.get("CONTENT_LENGTH", "").isdigit() and int(environ["CONTENT_LENGTH"]) > LARGE_UPLOAD:
        release_freed_memory()


def on_exit(server):
    """Remove the metrics folder this configuration made (one given from outside is left as it is)."""
    if OWN_METRICS_DIR:
        shutil.rmtree(OWN_METRICS_DIR, ignore_errors=True)


def on_starting(server):
    """Refuse to start, with one line, when the model file is missing or is not the one its card describes;
    start the metrics afresh (a PROMETHEUS_MULTIPROC_DIR given from outside may hold an earlier run's)."""
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)
    model_path = os.environ.get("MODEL_PATH", DEFAULTS["MODEL_PATH"])
    try:
        checked_card(model_path)
    except ModelError as error:
        print(f"digit-recognition cannot start: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
