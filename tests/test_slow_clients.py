"""Slow clients against the Procfile's server, on loopback: connections that dribble their headers or their
body hold a greenlet each, never a worker, so everyone else is answered; the header and body deadlines
close or answer them (408) as documented; a slow but steady upload is read whole and answered; and a drain
answers an upload still arriving. Each test bounds its waits, and none asserts how fast anything is."""

import http.client
import json
import signal
import socket
import threading
import time

import pytest

from tests.images import encode, paper_photo
from tests.servers import multipart, post, recognize, running
from tests.test_info import response_validator
from tests.test_metrics import sample

DRIBBLE = 0.2  # seconds between the bytes of a dribbling client


@pytest.fixture(scope="module")
def server():
    """A server whose upload deadlines are short enough to see them expire in a test."""
    with running(HEADER_TIMEOUT="3", BODY_TIMEOUT="3", REQUEST_TIMEOUT="2") as started:
        yield started


class Dribbler(threading.Thread):
    """A connection that sends `data` one byte every DRIBBLE seconds, until it is sent, the server closes the
    connection, or `stop` is called; then reads what the server answered."""

    def __init__(self, port, data):
        super().__init__(daemon=True)
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.data, self.sent, self.closed_by_server, self.answer = data, 0, threading.Event(), b""
        self.stopping = threading.Event()

    def run(self):
        try:
            while self.sent < len(self.data) and not self.stopping.is_set():
                self.connection.sendall(self.data[self.sent : self.sent + 1])
                self.sent += 1
                time.sleep(DRIBBLE)
            self.connection.settimeout(0 if self.stopping.is_set() else 30)
            self.answer = self.connection.recv(65536)
            if not self.answer:
                self.closed_by_server.set()
        except (BlockingIOError, TimeoutError):
            pass
        except OSError:  # reset or broken: the server closed it
            self.closed_by_server.set()

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)
        self.connection.close()


def request_head(port, length, content_type="image/png", path="/recognize.json"):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_slow_headers_and_slow_bodies_do_not_hold_up_other_clients(server):
    port, _ = server
    digit = encode(paper_photo(4, size=(300, 240)))
    dribblers = [Dribbler(port, request_head(port, len(digit)) + digit) for _ in range(3)]  # slow headers
    bodies = []
    for _ in range(3):  # the head at once, then the body a byte at a time
        body = Dribbler(port, digit)
        body.connection.sendall(request_head(port, len(digit)))
        bodies.append(body)
    for dribbler in dribblers + bodies:
        dribbler.start()
    try:
        exchanges = [recognize(port, n % 10) for n in range(20)]
        assert [exchange.correct for exchange in exchanges] == [True] * 20, exchanges
        assert all(dribbler.is_alive() for dribbler in dribblers + bodies)  # still dribbling meanwhile
    finally:
        for dribbler in dribblers + bodies:
            dribbler.stop()


def test_a_request_head_that_stops_coming_is_closed_after_the_header_deadline(server):
    port, _ = server
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        connection.sendall(b"POST /recognize.json HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.monotonic()
        assert connection.recv(1024) == b""  # closed by the server, with no answer (as nginx does)
        assert time.monotonic() - started < 25  # closed at all, not by the client's own 30 s timeout
    finally:
        connection.close()


def test_an_idle_keep_alive_connection_outlives_the_header_deadline(server):
    """Idle between requests is not a slow request: an open keep-alive connection is kept."""
    port, _ = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body, content_type = multipart([3])
        for _ in range(2):
            connection.request("POST", "/recognize.json", body, {"Content-Type": content_type})
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["digit"] == 3
            time.sleep(4)  # longer than HEADER_TIMEOUT, idle
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/recognize.json", "/read.json"])
def test_a_body_that_stops_coming_is_answered_408_and_closed(server, path):
    port, _ = server
    digit = encode(paper_photo(4, size=(300, 240)))
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        connection.sendall(request_head(port, len(digit), path=path) + digit[: len(digit) // 2])
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = json.loads(response.read())
        assert response.status == 408 and answer["error"]["code"] == "request_timeout", answer
        response_validator(path, "post", 408).validate(answer)
        assert response.getheader("Content-Type") == "application/json"
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert connection.recv(1024) == b""  # and the connection closed: the rest of its body is not read
    finally:
        connection.close()


def test_a_slow_steady_upload_is_read_whole_and_answered(server):
    """A photo at about 40 KB/s takes longer than REQUEST_TIMEOUT (2 s here), which times the work alone."""
    port, _ = server
    photo = encode(paper_photo(6, size=(1600, 1200)), "JPEG", quality=92)
    assert len(photo) > 120_000
    before = metric(port, "408")
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        connection.sendall(request_head(port, len(photo), "image/jpeg"))
        started = time.monotonic()
        for start_at in range(0, len(photo), 4000):
            connection.sendall(photo[start_at : start_at + 4000])
            time.sleep(0.1)
        assert time.monotonic() - started > 2
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200 and answer["digit"] == 6, answer
    assert metric(port, "408") == before


def test_a_drain_answers_an_upload_still_arriving():
    with running(BODY_MIN_RATE="10000") as (port, process):
        photo = encode(paper_photo(2, size=(800, 600)), "JPEG", quality=90)
        connection = socket.create_connection(("127.0.0.1", port), timeout=60)
        connection.sendall(request_head(port, len(photo), "image/jpeg") + photo[:1000])
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        for start_at in range(1000, len(photo), 8000):
            connection.sendall(photo[start_at : start_at + 8000])
            time.sleep(0.05)
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = json.loads(response.read())
        connection.close()
        assert response.status == 200 and answer["digit"] == 2, answer
        assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.output()


def metric(port, status):
    """/metrics' count of POST /recognize.json answers with `status`, added up over the workers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return sample(text, "digit_recognition_requests_total", endpoint="/recognize.json", method="POST", status=status)


def test_uploads_arriving_at_once_are_held_within_the_upload_memory():
    """The bodies still arriving at a worker hold at most UPLOAD_MEMORY, counted in the bytes that came: a
    length declared and not sent holds nothing; one that does not fit in what has come is answered 503 busy
    before any of it is read, while small requests are still answered; and the memory is free again once
    the slow upload's client has gone."""
    photo = encode(paper_photo(7, size=(1200, 900)), "JPEG", quality=92)
    with running(WEB_CONCURRENCY="1", UPLOAD_MEMORY=str(len(photo) * 3 // 2)) as (port, _):
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.sendall(request_head(port, len(photo), "image/jpeg") + photo[:1000])
        status, _, answer = post(port, photo, "image/jpeg")
        assert status == 200 and answer["digit"] == 7, answer  # the slow one's declared length holds nothing
        slow.sendall(photo[1000 : len(photo) * 9 // 10])  # and the rest later, or never
        time.sleep(1)
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            connection.sendall(request_head(port, len(photo), "image/jpeg"))
            response = http.client.HTTPResponse(connection)
            response.begin()
            answer = json.loads(response.read())
            assert response.status == 503 and answer["error"]["code"] == "busy", answer
            assert response.getheader("Retry-After") == "2"
            response_validator("/recognize.json", "post", 503).validate(answer)
            assert connection.recv(1024) == b""  # closed: the body it declared is never read
        finally:
            connection.close()
        assert [recognize(port, digit).correct for digit in (1, 2)] == [True, True]
        slow.close()
        for _ in range(50):  # the worker sees the slow client gone at its next read
            status, _, answer = post(port, photo, "image/jpeg")
            if status != 503:
                break
            time.sleep(0.1)
        assert status == 200 and answer["digit"] == 7, answer
