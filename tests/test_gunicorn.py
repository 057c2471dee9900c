"""The Procfile's web line, run as Heroku runs it: gunicorn on $PORT, spoken to over HTTP on loopback.

The fault tests (issue 7) watch the server from outside as an operator would, through /proc: the gunicorn
master's children are its workers, and a worker holds the TCP connection of the request it is serving (a
sync worker holds exactly one at a time, from accepting it until the answer is sent)."""

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
from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.evaluate import multipart_body
from tests.conftest import ROOT
from tests.images import encode, mnist_style
from tests.test_metrics import sample

WORKERS = 2  # WEB_CONCURRENCY for every server started here, as on a Basic or Standard-1X dyno
HEROKU_GRACE = 30  # seconds between Heroku's SIGTERM and its SIGKILL


def web_command():
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("the Procfile has no web process")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    return Gunicorn(["bash", "-c", f"exec {web_command()}"], cwd=ROOT, env=env)


def wait_until_healthy(port, process, seconds=90):
    """Until one worker answers /healthz (the other may still be loading its model)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.output()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return json.load(response)
        except OSError:  # not listening yet, or listening while the workers still load the model
            time.sleep(0.2)
    raise AssertionError(f"no /healthz answer within {seconds} s")


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
            for pid in workers_of(process):
                os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait()


@contextlib.contextmanager
def running():
    port = free_port()
    process = start(port)
    try:
        wait_until_healthy(port, process)
        yield port, process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def server():
    """One server for the tests that leave it serving."""
    with running() as started:
        yield started


@pytest.fixture
def own_server():
    """A server of the test's own, for a test that stops it."""
    with running() as started:
        yield started


def post(port, body, content_type):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/recognize.json", data=body,
                                     headers={"Content-Type": content_type, "X-Request-ID": "gunicorn-test"})
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


def queued_on(port):
    """Client ports of the connections on `port` that the kernel has completed, with request bytes
    waiting, and that no worker has accepted yet (no process owns them: inode 0)."""
    return [peer for local, peer, state, _, unread, inode in tcp_table()
            if local == port and state == "01" and inode == "0" and unread > 0]


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
    """Once each upload's connection is held by a worker: {upload: worker pid}. With one upload per
    worker, each sync worker holds one, so this also waits for every worker to be up and accepting."""
    def holders():
        owner = {}
        for pid in workers_of(process):
            for upload in uploads:
                if upload.client_port in clients_held_by(pid, port):
                    owner[upload] = pid
        return owner if len(owner) == len(uploads) else None
    return wait_for(holders, seconds, f"{len(uploads)} uploads each held by a worker")


def one_answer_from_each_worker(port, process):
    """A digit to each worker at once, each held by a different worker and answered: the workers' pids.
    Waits for every worker to be up, and shows that each one answers."""
    digits = list(range(1, WORKERS + 1))
    uploads = [SlowUpload(port, *multipart([digit])) for digit in digits]
    try:
        holders = held_by_workers(uploads, port, process)
        for digit, upload in zip(digits, uploads):
            status, _, body = upload.finish()
            assert status == 200 and body["digit"] == digit, body
    finally:
        for upload in uploads:
            upload.close()
    return set(holders.values())


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


# ---- the tests ----

def test_the_procfile_server_reads_a_digit_over_http(server):
    port, _ = server
    status, headers, body = post(port, encode(mnist_style(7)), "image/png")
    assert status == 200 and body["digit"] == 7
    assert headers["X-Request-ID"] == "gunicorn-test"
    assert headers["X-Model-Version"] == json.loads((ROOT / "model" / "model.json").read_text())["version"]


def test_the_procfile_server_answers_errors_in_json(server):
    port, _ = server
    status, _, body = post(port, b"not an image", "image/png")
    assert status == 400 and body["error"]["code"] == "invalid_image"


def test_concurrent_clients_each_get_their_own_answer(server):
    """32 clients at once, every digit and some broken uploads mixed: each answer belongs to its request."""
    port, _ = server
    sent = [(i % 10, i % 7 == 6) for i in range(96)]  # (digit, broken)

    def send(item):
        digit, broken = item
        return post(port, b"broken" if broken else encode(mnist_style(digit)), "image/png")

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(send, sent))
    for (digit, broken), (status, _, body) in zip(sent, answers):
        if broken:
            assert status == 400 and body["error"]["code"] == "invalid_image"
        else:
            assert status == 200 and body["digit"] == digit, body


def test_a_worker_killed_under_load_is_replaced_and_the_service_keeps_answering(server):
    """SIGKILL (the OOM killer's signal) to one worker while 4 clients send digits without pause. A sync
    worker holds one accepted connection at a time, so at most the one request it was serving can fail,
    and only as a broken connection: requests queued on the shared listening socket go to the other
    worker, and the master forks a replacement that serves too."""
    port, process = server
    first = one_answer_from_each_worker(port, process)
    assert len(first) == WORKERS

    with Load(port, clients=4) as load:
        wait_for(lambda: len(load.answered_after(0)) >= 40, 60, "40 answers under load")
        victim = min(first)
        for _ in range(100):  # stop the victim while it is serving a request, to see which one it is
            os.kill(victim, signal.SIGSTOP)
            wait_for(lambda: process_state(victim) == "T", 10, "the worker stopped")
            on_victim = clients_held_by(victim, port)
            if on_victim:
                break
            os.kill(victim, signal.SIGCONT)
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        def replacement():
            now = workers_of(process)
            return len(now) == WORKERS and victim not in now and now - first

        (new,) = wait_for(replacement, 60, "a replacement worker forked")
        forked = time.monotonic()
        wait_for(lambda: clients_held_by(new, port), 120, "the replacement serving a request", interval=0.05)
        serving = time.monotonic()
        wait_for(lambda: len(load.answered_after(serving)) >= 60, 60, "60 answers after the replacement")

    assert workers_of(process) == first - {victim} | {new}
    exchanges = load.exchanges
    failed = [exchange for exchange in exchanges if exchange.error]
    print(f"\n{len(exchanges)} requests, {len(failed)} failed ({failed}), {len(on_victim)} on the killed worker; "
          f"replacement forked {forked - killed:.2f} s and serving {serving - killed:.2f} s after the SIGKILL")
    assert len(on_victim) <= 1  # a sync worker serves one connection at a time
    assert len(failed) <= len(on_victim)
    for exchange in failed:  # the request the worker was serving, its connection reset or closed unanswered
        assert exchange.client_port in on_victim and exchange.started < killed, exchange
        assert isinstance(exchange.error, ConnectionError), exchange
    wrong = [exchange for exchange in exchanges if not exchange.error and not exchange.correct]
    assert not wrong
    after = [exchange for exchange in exchanges if exchange.started > serving]
    assert len(after) >= 60 and all(exchange.correct for exchange in after)

    assert one_answer_from_each_worker(port, process) == first - {victim} | {new}  # the replacement answers too
    assert "Traceback" not in process.output()


@pytest.mark.parametrize("every_process", [False, True], ids=["to the master", "to every process, as Heroku"])
def test_sigterm_answers_every_request_in_flight_and_exits_within_herokus_30_seconds(own_server, every_process):
    """Each worker is mid-way through reading a 64-digit batch, and four more requests wait in the
    listening socket's queue, when SIGTERM reaches the master (the way Heroku's dyno manager stops a
    dyno): all six are answered in full, then the server exits with status 0 within Heroku's 30 s
    grace, and refuses connections after. Gunicorn's own sync workers would stop accepting at once and
    the kernel would reset the queued four (benoitc/gunicorn#3397): gunicorn.conf.py's workers drain."""
    port, process = own_server
    batches = [[(i * 3 + offset) % 10 for i in range(64)] for offset in range(WORKERS)]
    uploads = [SlowUpload(port, *multipart(digits)) for digits in batches]
    waiting = [3, 5, 8, 9]
    pool = ThreadPoolExecutor(len(waiting))
    try:
        holders = held_by_workers(uploads, port, process)
        workers = set(holders.values())
        assert len(workers) == WORKERS and listens(process.pid, port)
        for upload in uploads:  # each worker reads all that was sent, and waits inside the application
            upload.send_half()
        wait_for(lambda: all(all_read(port, upload.client_port) for upload in uploads), 30,
                 "the workers reading the first half of the uploads")
        queued = [pool.submit(recognize, port, digit) for digit in waiting]
        wait_for(lambda: len(queued_on(port)) == len(waiting), 30, "the other requests queuing on the socket")

        process.send_signal(signal.SIGTERM)
        if every_process:
            for worker in workers:
                os.kill(worker, signal.SIGTERM)
        terminated = time.monotonic()
        # The master closes its listening socket and, in the next statements, sends SIGTERM on to the
        # workers; half a second more is a wide margin for that, not a measure of anything.
        wait_for(lambda: not listens(process.pid, port), 10, "the master closing its listening socket")
        time.sleep(0.5)
        assert all(upload.client_port in clients_held_by(holders[upload], port) for upload in uploads)
        answers = [upload.finish() for upload in uploads]
        drained = [exchange.result() for exchange in queued]
    finally:
        for upload in uploads:
            upload.close()
        pool.shutdown()

    for digits, (status, _, body) in zip(batches, answers):
        assert status == 200, body
        assert [prediction["digit"] for prediction in body["predictions"]] == digits
    assert [(exchange.status, exchange.error, exchange.answer["digit"] if exchange.answer else None)
            for exchange in drained] == [(200, None, digit) for digit in waiting]
    assert process.wait(timeout=HEROKU_GRACE - (time.monotonic() - terminated)) == 0
    print(f"\n{len(uploads)} requests in flight and {len(waiting)} queued; the server exited {time.monotonic() - terminated:.2f} s "
          f"after SIGTERM (0.5 s of it the test holding the uploads)")
    assert not any(process_state(pid) for pid in workers)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert "Traceback" not in process.output()


def test_a_missing_model_stops_start_up_with_one_clear_line(tmp_path):
    process = start(free_port(), MODEL_PATH=str(tmp_path / "model.h5"))
    try:
        process.wait(timeout=60)
    finally:
        stop(process)
    output = process.output()
    assert process.returncode != 0
    assert "digit-recognition cannot start: cannot read the model" in output
    assert "Traceback" not in output


def counted(port, digit):
    """/metrics' count of answers `digit`, added up over the workers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sample(text, "digit_recognition_predictions_total", digit=digit)


def test_metrics_add_up_the_answers_of_every_worker(server):
    port, process = server
    before = {digit: counted(port, digit) for digit in range(1, WORKERS + 1)}
    holders = one_answer_from_each_worker(port, process)  # worker one reads the 1, worker two the 2, ...
    assert len(holders) == WORKERS
    assert {digit: counted(port, digit) - count for digit, count in before.items()} == {
        digit: 1 for digit in range(1, WORKERS + 1)}  # ... and /metrics, answered by either, counts both
