"""The Procfile's web line, run as Heroku runs it: gunicorn on $PORT, spoken to over HTTP on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ROOT
from tests.images import encode, mnist_style


def web_command():
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("the Procfile has no web process")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(port, **environment):
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # this venv's gunicorn
    env = {**os.environ, "PATH": path, "PORT": str(port), "WEB_CONCURRENCY": "2", **environment}
    return subprocess.Popen(["bash", "-c", f"exec {web_command()}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_healthy(port, process, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return json.load(response)
        except OSError:  # not listening yet, or listening while the workers still load the model
            time.sleep(0.2)
    raise AssertionError(f"no /healthz answer within {seconds} s")


@pytest.fixture(scope="module")
def server():
    port = free_port()
    process = start(port)
    try:
        wait_until_healthy(port, process)
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def post(port, body, content_type):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/recognize.json", data=body,
                                     headers={"Content-Type": content_type, "X-Request-ID": "gunicorn-test"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


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


def test_sigterm_stops_the_server_cleanly_within_herokus_30_seconds(server):
    port, process = server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.communicate()[1]


def test_a_missing_model_stops_start_up_with_one_clear_line(tmp_path):
    process = start(free_port(), MODEL_PATH=str(tmp_path / "model.h5"))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "digit-recognition cannot start: cannot read the model" in stderr
    assert "Traceback" not in stderr
