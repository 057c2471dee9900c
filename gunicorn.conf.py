"""Gunicorn settings for Heroku and for local runs: `gunicorn --config gunicorn.conf.py 'app:create_app()'`."""

import ctypes
import gc
import glob
import logging
import math
import os
import shutil
import sys
import tempfile
import time

# One compute thread per worker: the workers are the parallelism, and XLA splitting a small convolution
# over threads that the other worker also needs measured ~10% fewer requests/s (scripts/bench.py).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")


LARGE_UPLOAD = 100_000  # bytes: a photo rather than a drawing or an MNIST digit
TRIM_EVERY = 10  # seconds between two hand-backs of freed memory in a worker
HEADER_TIMEOUT = float(os.environ.get("HEADER_TIMEOUT", "10"))  # seconds for a request head, once it begins


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
from app.predictor import ModelError, checked_card, checked_lines_card  # noqa: E402
import gevent  # noqa: E402
from gunicorn.workers.ggevent import GeventWorker  # noqa: E402

import keras  # noqa: E402,F401  imported once here, in the master: the workers share its memory copy-on-write

release_freed_memory()
gc.freeze()  # the master's objects: the workers' garbage collector leaves them, and their pages, shared


class Connection:
    """A client connection as the worker reads it: until a request begins it may sit idle for `keepalive`
    seconds (a keep-alive connection from Heroku's router, which holds them 90 s); once it does, the rest
    of the request head must come within HEADER_TIMEOUT. Either limit closes the connection, as nginx's
    client_header_timeout does. The body is the application's to time (app/body.py)."""

    def __init__(self, sock, idle_seconds, head_seconds):
        self._sock, self._idle, self._head = sock, idle_seconds, head_seconds
        self._head_deadline = None  # None: waiting for a request to begin

    def recv(self, size):
        if self._head_deadline is None:
            self._sock.settimeout(self._idle)
        else:
            left = self._head_deadline - time.monotonic()
            if left <= 0:
                return b""  # the parser takes this as the client gone, and closes the connection
            self._sock.settimeout(left)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            return b""
        if self._head_deadline is None and data:
            self._head_deadline = time.monotonic() + self._head
        return data

    def head_received(self):
        self._head_deadline = math.inf
        self._sock.settimeout(None)  # the body's time is the application's

    def answered(self):
        self._head_deadline = None

    def __getattr__(self, name):
        return getattr(self._sock, name)


class BufferingGeventWorker(GeventWorker):
    """Gunicorn's gevent worker: every connection waits in a greenlet of its own, so slow clients and idle
    keep-alive connections cost a little memory, never a worker. The application reads each request's body
    whole (app/body.py) before any work starts, and the work itself never yields, so one request's work
    runs to its end and REQUEST_TIMEOUT's alarm can only interrupt it. After each answer the connection
    waits its turn behind the others: without that, at 32 keep-alive clients, a worker served some
    connections over and over while others waited (p99 200-350 ms against 60-95). On SIGTERM, gunicorn's
    gevent worker stops accepting and finishes every request it holds within graceful_timeout."""

    next_trim = 0.0  # monotonic time of the next hand-back of freed memory

    def handle(self, listener, client, addr):
        super().handle(listener, Connection(client, self.cfg.keepalive, HEADER_TIMEOUT), addr)

    def notify(self):
        """Once a second the worker reports in; every TRIM_EVERY seconds it also hands back to the OS the
        memory that its threads' malloc arenas keep once freed (a few ms): 10-20 MB a dyno, which 1,000
        idle connections would otherwise push past 512 MB (scripts/slow_clients.py). Fewer arenas kept
        less but cost a quarter of the requests/s at 32 clients."""
        super().notify()
        if time.monotonic() >= self.next_trim:
            self.next_trim = time.monotonic() + TRIM_EVERY
            release_freed_memory()

    def handle_request(self, listener_name, req, sock, addr):
        sock.head_received()
        super().handle_request(listener_name, req, sock, addr)
        if _body_left(req):  # refused before it was read (413, 408): closed, rather than read to its end
            raise StopIteration
        sock.answered()
        gevent.sleep(0)  # every other connection with a request waiting goes before this one's next


def _body_left(req):
    reader = getattr(req.body, "reader", None)
    return getattr(reader, "length", 0) > 0 or getattr(reader, "parser", None) is not None


bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = BufferingGeventWorker
worker_connections = 2000  # per worker: idle keep-alive connections are cheap, each a greenlet
timeout = 30  # a request that takes longer is stuck: the worker is replaced
graceful_timeout = 20  # on SIGTERM finish in-flight requests, well inside Heroku's 30 s before SIGKILL
keepalive = 100  # idle seconds: longer than Heroku's router holds a keep-alive connection (90 s)
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


def worker_exit(server, worker):
    """End a worker without the interpreter's teardown, in which gevent's patched threading is gone before
    logging's weak references are cleared: "Exception ignored ... TypeError" tracebacks from every worker
    on every restart (gevent/gevent#2148). What the teardown does that matters is done first: pending
    Sentry events sent, logs flushed. The worker leaves with the exit status it was leaving with (3 for a
    worker that could not boot, which stops the master)."""
    import sentry_sdk

    leaving = sys.exc_info()[1]
    status = leaving.code if isinstance(leaving, SystemExit) and isinstance(leaving.code, int) else int(leaving is not None)
    sentry_sdk.flush(timeout=2)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def on_exit(server):
    """Remove the metrics folder this configuration made (one given from outside is left as it is)."""
    if OWN_METRICS_DIR:
        shutil.rmtree(OWN_METRICS_DIR, ignore_errors=True)


def on_starting(server):
    """Refuse to start, with one line, when a model file is missing or is not the one its card describes;
    start the metrics afresh (a PROMETHEUS_MULTIPROC_DIR given from outside may hold an earlier run's)."""
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)
    model_path = os.environ.get("MODEL_PATH", DEFAULTS["MODEL_PATH"])
    try:
        checked_card(model_path)
        checked_lines_card(model_path)
    except ModelError as error:
        print(f"digit-recognition cannot start: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
