"""The Procfile's web line under test, and the means to watch it from outside as an operator would:
its processes and their TCP sockets through /proc, uploads sent in slow steps, and clients under load."""

import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from scripts.processes import StartError, free_port, procfile_web_line, wait_until_healthy
from scripts.evaluate import multipart_body
from tests.conftest import ROOT
from tests.images import encode, mnist_style

WORKERS = 2  # WEB_CONCURRENCY for every server started here, as on a Basic or Standard-1X dyno
HEROKU_GRACE = 30  # seconds between Heroku's SIGTERM and its SIGKILL
ROUTER_SAW = "203.0.113.9"  # the client's address as Heroku's router appends it to X-Forwarded-For


class Gunicorn(subprocess.Popen):
    """The server's process (the gunicorn master, exec'd by bash). Its output, standard output and error
    together, is read as it comes: the request log of a long test must not fill the pipe and block the workers."""

    def __init__(self, command, **options):
        super().__init__(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.stdout:
            self.lines.append(line)

    def output(self):
        """Everything the server has written so far; all of it once the server has exited."""
        if self.poll() is not None:
            self.reader.join(timeout=10)
        return "".join(self.lines)


def start(port, **environment):
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # this venv's gunicorn
    env = {**os.environ, "PATH": path, "PORT": str(port), "WEB_CONCURRENCY": str(WORKERS), **environment}
    return Gunicorn(["bash", "-c", f"exec {procfile_web_line()}"], cwd=ROOT, env=env)


def wait_for(condition, seconds, what, interval=0.01):
    """Poll `condition` every `interval` s until it returns something true, and return that; fail after
    `seconds`. A deadline for waiting only: nothing here asserts how fast the server is."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(interval)


def stop(process):
    """Stop a server that a test left running: SIGTERM, then SIGKILL for the master and its workers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=HEROKU_GRACE)
        except subprocess.TimeoutExpired:
            kill(process)


def kill(process):
    """SIGKILL for the master and its workers, for a server that SIGTERM would not stop in time."""
    for pid in workers_of(process):
        os.kill(pid, signal.SIGKILL)
    process.kill()
    process.wait()


@contextlib.contextmanager
def running(**environment):
    """A server on a free port, healthy, with `environment` over this one's; stopped afterwards."""
    port = free_port()
    process = start(port, **environment)
    try:
        try:
            wait_until_healthy(port, process)
        except StartError as error:
            raise AssertionError(f"{error}:\n{process.output()}") from None
        yield port, process
    finally:
        stop(process)


def post(port, body, content_type, path="/recognize.json"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Content-Type": content_type, "X-Request-ID": "gunicorn-test",
                                              "X-Forwarded-For": ROUTER_SAW})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def multipart(digits):
    """A multipart upload (body, Content-Type) of one MNIST-style PNG field `image` per digit."""
    boundary = "gunicorntestboundary"
    body = multipart_body([(f"{i}.png", encode(mnist_style(digit))) for i, digit in enumerate(digits)], boundary)
    return body, f"multipart/form-data; boundary={boundary}"


# ---- the server seen from outside, through /proc ----

def workers_of(process):
    """The pids of the gunicorn master's live children, its workers (a reaped-to-be zombie is not one)."""
    with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
        pids = [int(pid) for pid in children.read().split()]
    return {pid for pid in pids if process_state(pid) not in (None, "Z")}


def process_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def tcp_table():
    """This network namespace's TCP sockets: (local port, peer port, state, bytes sent and not yet
    acknowledged, bytes received and not yet read, inode) for each."""
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)  # the header
            for row in rows:
                # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
                fields = row.split()
                unacknowledged, unread = (int(queue, 16) for queue in fields[4].split(":"))
                sockets.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16),
                                fields[3], unacknowledged, unread, fields[9]))
    return sockets


def tcp_sockets(pid, port):
    """(state, peer port) of each TCP socket on local `port` that process `pid` has open. State "0A" with
    peer port 0 is the listening socket; the others are accepted connections, with the client's port."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return []
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link.removeprefix("socket:[").removesuffix("]"))
    return [(state, peer) for local, peer, state, _, _, inode in tcp_table() if inode in inodes and local == port]


def clients_held_by(pid, port):
    """The client ports of the connections that worker `pid` has accepted and not yet closed."""
    return {peer for _, peer in tcp_sockets(pid, port) if peer}


def all_read(port, client_port):
    """Whether the server has read every byte that the client on `client_port` has sent: none is on the way
    (unacknowledged by the server's kernel) or waiting in the server socket to be read."""
    queues = [(unacknowledged, unread) for local, peer, state, unacknowledged, unread, _ in tcp_table()
              if (local, peer) in ((port, client_port), (client_port, port)) and state == "01"]  # established
    return len(queues) == 2 and not any(sum(queue) for queue in queues)


def listens(pid, port):
    return any(state == "0A" for state, _ in tcp_sockets(pid, port))


class SlowUpload:
    """A POST sent in steps, to hold a worker mid-request. First the request line only: the worker that
    accepts the connection waits in gunicorn for the headers, before the application (and its
    REQUEST_TIMEOUT) starts. `send_half` sends the headers and half the body: the worker goes into the
    application and waits there for the rest. `finish` sends the rest and reads the whole answer."""

    def __init__(self, port, body, content_type):
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.client_port = self.connection.getsockname()[1]
        head = (f"Host: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"X-Request-ID: slow-{self.client_port}\r\n\r\n").encode()
        half = len(body) // 2
        self.parts = [b"POST /recognize.json HTTP/1.1\r\n", head + body[:half], body[half:]]
        self._send(1)

    def _send(self, parts):
        while parts:
            self.connection.sendall(self.parts.pop(0))
            parts -= 1

    def send_half(self):
        self._send(1)

    def finish(self):
        """Send the rest; the whole answer: (status, headers, JSON body)."""
        self._send(len(self.parts))
        response = http.client.HTTPResponse(self.connection)
        try:
            response.begin()
            return response.status, dict(response.headers), json.loads(response.read())
        finally:
            response.close()
            self.connection.close()

    def close(self):
        self.connection.close()


def held_by_workers(uploads, port, process, seconds=120):
    """Once each upload's connection is held by a worker: {upload: worker pid}."""
    def holders():
        owner = {}
        for pid in workers_of(process):
            for upload in uploads:
                if upload.client_port in clients_held_by(pid, port):
                    owner[upload] = pid
        return owner if len(owner) == len(uploads) else None
    return wait_for(holders, seconds, f"{len(uploads)} uploads each held by a worker")


def one_on_each_worker(port, process, body_of):
    """SlowUploads, one held by each worker, the k-th made with `body_of(k)`: connections are opened until
    every worker holds one (each gevent worker accepts whatever connections it can, so which one takes a
    connection is for the kernel to say), and the others closed unanswered. Waits for every worker to be
    up and accepting."""
    wait_for(lambda: len(workers_of(process)) == WORKERS, 120, "every worker started")
    kept, tried = {}, []
    try:
        for _ in range(200):
            upload = SlowUpload(port, *body_of(len(kept)))
            tried.append(upload)
            (pid,) = held_by_workers([upload], port, process).values()
            if pid not in kept:
                kept[pid] = upload
                if len(kept) == WORKERS:
                    return kept
        raise AssertionError(f"200 connections, and still not one on each of {WORKERS} workers")
    finally:
        for upload in tried:
            if upload not in kept.values():
                upload.close()


def one_answer_from_each_worker(port, process):
    """A digit to each worker at once (1 to the first to take one, 2 to the second, ...), each answered: the
    workers' pids. Shows that each worker answers."""
    uploads = one_on_each_worker(port, process, lambda k: multipart([k + 1]))
    try:
        for digit, upload in enumerate(uploads.values(), start=1):
            status, _, body = upload.finish()
            assert status == 200 and body["digit"] == digit, body
    finally:
        for upload in uploads.values():
            upload.close()
    return set(uploads)


@dataclasses.dataclass
class Exchange:
    """One request of a load client: what was sent, when, from which port, and what came back."""
    digit: int
    started: float
    client_port: int = 0
    status: int = 0
    answer: dict = None
    error: Exception = None

    @property
    def correct(self):
        return self.status == 200 and self.answer["digit"] == self.digit


UPLOADS = {digit: multipart([digit]) for digit in range(10)}


def recognize(port, digit):
    """A multipart upload of an MNIST-style `digit` on a new connection, as a browser or curl sends it."""
    exchange = Exchange(digit, time.monotonic())
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.connect()
        exchange.client_port = connection.sock.getsockname()[1]
        body, content_type = UPLOADS[digit]
        connection.request("POST", "/recognize.json", body, {"Content-Type": content_type})
        response = connection.getresponse()
        exchange.status, exchange.answer = response.status, json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError) as error:  # ValueError: a body that is not JSON
        exchange.error = error
    finally:
        connection.close()
    return exchange


class Load:
    """`clients` threads, each sending digits one after another (n, n + 1, ... modulo 10) until the block ends."""

    def __init__(self, port, clients):
        self.exchanges = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(port, n), daemon=True) for n in range(clients)]

    def _client(self, port, first):
        for n in itertools.count(first):
            if self.stopping.is_set():
                return
            self.exchanges.append(recognize(port, n % 10))

    def answered_after(self, moment):
        return [exchange for exchange in list(self.exchanges) if exchange.started > moment and not exchange.error]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=90)
