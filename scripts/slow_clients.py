"""Slow clients and idle connections against the service, side by side with gunicorn's sync workers.

    python scripts/slow_clients.py        # about 3 minutes; makes or updates .venv-serve like bench.py

Starts the Procfile's web line twice on loopback, as `service` (its gevent workers) and as `sync`
(GUNICORN_CMD_ARGS=--worker-class sync, as it served before), and measures on each, one after the other:
  dribblers    16 connections sending a request head a byte every 0.5 s and 16 sending a body a byte
               every 0.5 s, for 30 s, while an honest client posts an MNIST digit every 50 ms, each on
               a new connection with a 5 s timeout: its failures and its slowest answer;
  idle         1,000 connections that each made one request and stay open, for 15 s, while the honest
               client posts as above; and the whole server's PSS (master and workers) with them open;
  slow photo   a 1.5 MB phone photo uploaded at 100 KB/s: its status and digit;
  held uploads 40 connections that each send all but the last byte of a 9 MB body and then hold it, for
               15 s, while the honest client posts as above: how many of them the server still holds
               (the others answered 503 busy and closed: UPLOAD_MEMORY), the honest client's failures,
               and the PSS.
The goals (issue 17): 0 failures and a slowest answer under 1 s among the dribblers, the honest client
unaffected by 1,000 idle connections within 512 MB, and the slow photo answered 200; and held uploads
neither failing the honest client nor taking the memory past UPLOAD_MEMORY a worker.
"""

import argparse
import http.client
import io
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: import scripts and tests

from scripts.bench import BOUNDARY, launch, multipart, ready_to_measure, stop  # noqa: E402
from scripts.make_eval_set import photo as phone_photo, to_bytes  # noqa: E402
from scripts.processes import megabytes, procfile_web_line, serving_venv  # noqa: E402

DRIBBLE = 0.5  # seconds between the bytes of a dribbling connection


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="how long the dribblers dribble (%(default)s)")
    parser.add_argument("--idle", type=int, default=1000, help="idle keep-alive connections (%(default)s)")
    parser.add_argument("--service-venv", type=Path, default=ROOT / ".venv-serve")
    args = parser.parse_args(argv)
    digits = ready_to_measure("slow_clients.py")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"slow-clients-{os.getpid()}"
    work.mkdir()
    one = multipart(work / "one.body", digits.x_test[:1])
    photo, digit = large_photo(digits, 1_500_000)
    deployed = serving_venv(args.service_venv)
    command = ["bash", "-c", "exec " + procfile_web_line()]
    results = {}
    for name, environment in [("service", deployed), ("sync", {**deployed, "GUNICORN_CMD_ARGS": "--worker-class sync"})]:
        print(f"starting {name} ...", file=sys.stderr, flush=True)
        server = launch(command, environment, ROOT, one)
        port = int(server["url"].split(":")[2].split("/")[0])
        try:
            print(f"{name}: dribblers ...", file=sys.stderr, flush=True)
            results[name] = dribblers(port, one.read_bytes(), args.seconds)
            print(f"{name}: idle connections ...", file=sys.stderr, flush=True)
            results[name] |= idle(port, one.read_bytes(), args.idle, server["process"].pid)
            print(f"{name}: slow photo ...", file=sys.stderr, flush=True)
            results[name] |= slow_upload(port, photo, digit, 100_000)
            print(f"{name}: held uploads ...", file=sys.stderr, flush=True)
            results[name] |= held_uploads(port, one.read_bytes(), 40, 9_000_000, server["process"].pid)
        finally:
            stop([server])
    rows = list(results["service"])
    print(f"\n{'':36}{'service':>22}{'sync':>22}")
    for row in rows:
        print(f"{row:36}" + "".join(f"{str(results[name][row]):>22}" for name in results))
    return 0


class Honest(threading.Thread):
    """A client that posts a digit every 50 ms, each on a new connection with a 5 s timeout."""

    def __init__(self, port, body):
        super().__init__(daemon=True)
        self.port, self.body, self.stopping = port, body, threading.Event()
        self.times, self.failures = [], 0

    def run(self):
        while not self.stopping.is_set():
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("POST", "/recognize.json", self.body,
                                   {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
                response = connection.getresponse()
                if response.status != 200 or "digit" not in json.loads(response.read()):
                    self.failures += 1
                else:
                    self.times.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException, ValueError):
                self.failures += 1
            finally:
                connection.close()
            time.sleep(max(0.0, 0.05 - (time.monotonic() - started)))

    def report(self, prefix):
        slowest = max(self.times) * 1000 if self.times else float("nan")
        return {f"{prefix}: honest answers": len(self.times), f"{prefix}: honest failures": self.failures,
                f"{prefix}: slowest answer ms": round(slowest, 1)}


def dribblers(port, body, seconds):
    head = request_head(port, f"multipart/form-data; boundary={BOUNDARY}", len(body))
    connections, stopping = [], threading.Event()

    def dribble(connection, data):
        try:
            for index in range(len(data)):
                if stopping.is_set():
                    return
                connection.sendall(data[index : index + 1])
                time.sleep(DRIBBLE)
        except OSError:  # closed by the server
            pass

    threads = []
    for kind in ("head", "body"):
        for _ in range(16):
            connection = socket.create_connection(("127.0.0.1", port), timeout=60)
            if kind == "body":
                connection.sendall(head)
            connections.append(connection)
            threads.append(threading.Thread(target=dribble, args=(connection, head + body if kind == "head" else body),
                                            daemon=True))
    honest = Honest(port, body)
    for thread in threads:
        thread.start()
    honest.start()
    time.sleep(seconds)
    honest.stopping.set()
    stopping.set()
    honest.join()
    for connection in connections:
        connection.close()
    return honest.report("dribblers")


def idle(port, body, count, pid):
    connections = []
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("POST", "/recognize.json", body,
                               {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        connections.append(connection)
    kept = sum(1 for connection in connections if connection.sock is not None and _peeked(connection.sock) != b"")
    honest = Honest(port, body)
    honest.start()
    time.sleep(15)
    honest.stopping.set()
    honest.join()
    pss = megabytes(pid)
    still = sum(1 for connection in connections if connection.sock is not None and _peeked(connection.sock) != b"")
    for connection in connections:
        connection.close()
    return {"idle: connections kept open": f"{kept} -> {still}", **honest.report("idle"),
            "idle: PSS MB with them open": round(pss, 1)}


def _peeked(sock):
    """What the server has said on a connection, without reading it: b"" once it has closed it, None while
    it says nothing, else the first byte of its answer."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    finally:
        sock.setblocking(True)


def held_uploads(port, body, count, size, pid):
    """`count` connections that each send a head for a `size`-byte body and all of it but its last byte, and
    hold it there while the honest client posts: how many the server still holds at the end."""
    head = request_head(port, "image/jpeg", size)
    connections = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(count)]

    def upload(connection):
        try:
            connection.sendall(head + bytes(size - 1))
        except OSError:  # refused and closed by the server
            pass

    threads = [threading.Thread(target=upload, args=(connection,), daemon=True) for connection in connections]
    for thread in threads:
        thread.start()
    honest = Honest(port, body)
    honest.start()
    time.sleep(15)
    pss = megabytes(pid)
    honest.stopping.set()
    honest.join()
    held = sum(1 for connection in connections if _peeked(connection) is None)
    for connection in connections:
        try:
            connection.shutdown(socket.SHUT_RDWR)  # wakes an upload still blocked in sending
        except OSError:
            pass
        connection.close()
    for thread in threads:
        thread.join(timeout=10)
    return {"held: uploads the server still holds": f"{held} of {count}", **honest.report("held"),
            "held: PSS MB with them held": round(pss, 1)}


def request_head(port, content_type, length):
    return (f"POST /recognize.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def large_photo(digits, size):
    """A phone photo (scripts/make_eval_set.py's kind) of an MNIST test digit, enlarged to a 12-megapixel
    camera's 4000 px and saved as its JPEG, at least `size` bytes; and its digit."""
    rng = np.random.default_rng(17)
    for index, digit in enumerate(digits.x_test[:50]):
        picture = Image.open(io.BytesIO(phone_photo(digit, rng, index)[0])).convert("RGB")
        scale = 4000 / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
        data = to_bytes(picture, "JPEG", quality=95)
        if len(data) >= size:
            return data, int(digits.y_test[index])
    raise SystemExit("slow_clients.py: no photo that large")


def slow_upload(port, photo, digit, rate):
    connection = socket.create_connection(("127.0.0.1", port), timeout=120)
    started = time.monotonic()
    try:
        connection.sendall(request_head(port, "image/jpeg", len(photo)))
        step = rate // 10
        for offset in range(0, len(photo), step):
            connection.sendall(photo[offset : offset + step])
            time.sleep(max(0.0, started + (offset + step) / rate - time.monotonic()))
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = json.loads(response.read())
        outcome = f"{response.status} digit {answer.get('digit')} ({digit} sent)" if response.status == 200 else \
            f"{response.status} {answer['error']['code']}"
    except (OSError, http.client.HTTPException, ValueError) as error:
        outcome = type(error).__name__
    finally:
        connection.close()
    return {f"{len(photo) / 1e6:.1f} MB photo at {rate // 1000} KB/s": outcome,
            "photo: seconds": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    sys.exit(main())
