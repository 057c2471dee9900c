"""The Procfile's web line, run as Heroku runs it: gunicorn on $PORT, spoken to over HTTP on loopback.

The fault tests (issue 7) watch the server from outside as an operator would, through /proc: the gunicorn
master's children are its workers, and a worker holds the TCP connections of the requests it is serving,
from accepting each until its answer is sent. The means of watching are in tests/servers.py."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.processes import free_port
from tests.conftest import ROOT
from tests.images import draw_digit, draw_number, encode, mnist_style
from tests.servers import (HEROKU_GRACE, ROUTER_SAW, WORKERS, Load, SlowUpload, all_read, clients_held_by,
                           held_by_workers, kill, listens, multipart, one_answer_from_each_worker, one_on_each_worker,
                           post, process_state, running, start, stop, wait_for, workers_of)
from tests.test_metrics import sample


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


# ---- the tests ----

def test_the_procfile_server_reads_a_digit_over_http_and_logs_its_client(server):
    port, process = server
    status, headers, body = post(port, encode(mnist_style(7)), "image/png")
    assert status == 200 and body["digit"] == 7
    assert headers["X-Request-ID"] == "gunicorn-test"
    logged = f" client={ROUTER_SAW} request_id=gunicorn-test"
    line = wait_for(lambda: [text for text in process.output().splitlines() if text.endswith(logged)], 5,
                    "the request's log line")
    assert "POST /recognize.json 200 " in line[0] and " digit=7 " in line[0]
    assert headers["X-Model-Version"] == json.loads((ROOT / "model" / "model.json").read_text())["version"]


def test_the_procfile_server_reads_numbers_and_refuses_what_is_not_a_digit(server):
    port, _ = server
    number = encode(draw_number("2026", ink=0, background=255)[0])
    status, _, body = post(port, number, "image/png", "/read.json")
    assert status == 200 and body["number"] == "2026"
    status, _, body = post(port, number, "image/png")
    assert status == 422 and body["error"]["code"] == "several_digits"
    status, _, body = post(port, encode(draw_digit("H", (300, 300), 220, 16)), "image/png")
    assert status == 422 and body["error"]["code"] == "not_a_digit" and "closest" in body["error"]


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
    """SIGKILL (the OOM killer's signal) to one worker while 4 clients send digits without pause. Only the
    requests whose connections that worker held can fail, and only as broken connections: new connections
    go to the other worker, and the master forks a replacement that serves too."""
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
    assert len(failed) <= len(on_victim)
    for exchange in failed:  # the request the worker was serving: its connection reset, or closed unanswered or
        # between the answer's headers and its body (gunicorn sends them in two writes), never a wrong answer
        assert exchange.client_port in on_victim and exchange.started < killed, exchange
        assert isinstance(exchange.error, (ConnectionError, http.client.IncompleteRead)), exchange
    wrong = [exchange for exchange in exchanges if not exchange.error and not exchange.correct]
    assert not wrong
    after = [exchange for exchange in exchanges if exchange.started > serving]
    assert len(after) >= 60 and all(exchange.correct for exchange in after)

    assert one_answer_from_each_worker(port, process) == first - {victim} | {new}  # the replacement answers too
    assert "Traceback" not in process.output()


@pytest.mark.parametrize("every_process", [False, True], ids=["to the master", "to every process, as Heroku"])
def test_sigterm_answers_every_request_in_flight_and_exits_within_herokus_30_seconds(own_server, every_process):
    """Each worker is mid-way through reading a 64-digit batch, and four more requests have sent no more
    than their request line, when SIGTERM reaches the master (the way Heroku's dyno manager stops a dyno)
    or every process: all six are answered in full, then the server exits with status 0 within Heroku's
    30 s grace, and refuses connections after."""
    port, process = own_server
    batches = [[(i * 3 + offset) % 10 for i in range(64)] for offset in range(WORKERS)]
    holders = {upload: pid for pid, upload in one_on_each_worker(port, process, lambda k: multipart(batches[k])).items()}
    uploads = list(holders)
    waiting = [3, 5, 8, 9]
    late = [SlowUpload(port, *multipart([digit])) for digit in waiting]
    try:
        held_by_workers(late, port, process)
        for upload in uploads:  # each worker reads all that was sent, and waits inside the application
            upload.send_half()
        wait_for(lambda: all(all_read(port, upload.client_port) for upload in uploads), 30,
                 "the workers reading the first half of the uploads")

        process.send_signal(signal.SIGTERM)
        if every_process:
            for worker in set(holders.values()):
                os.kill(worker, signal.SIGTERM)
        terminated = time.monotonic()
        # The master closes its listening socket and, in the next statements, sends SIGTERM on to the
        # workers; half a second more is a wide margin for that, not a measure of anything.
        wait_for(lambda: not listens(process.pid, port), 10, "the master closing its listening socket")
        time.sleep(0.5)
        assert all(upload.client_port in clients_held_by(holders[upload], port) for upload in uploads)
        answers = [upload.finish() for upload in uploads]
        drained = [upload.finish() for upload in late]
    finally:
        for upload in uploads + late:
            upload.close()

    for digits, (status, _, body) in zip(batches, answers):
        assert status == 200, body
        assert [prediction["digit"] for prediction in body["predictions"]] == digits
    assert [(status, body["digit"]) for status, _, body in drained] == [(200, digit) for digit in waiting]
    assert process.wait(timeout=HEROKU_GRACE - (time.monotonic() - terminated)) == 0
    print(f"\n{len(uploads)} uploads and {len(waiting)} requests in flight; the server exited "
          f"{time.monotonic() - terminated:.2f} s after SIGTERM (0.5 s of it the test holding the uploads)")
    assert not any(process_state(pid) for pid in holders.values())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert "Traceback" not in process.output()


def damaged_model(directory, damage):
    """A model file and card in `directory`, `damage`d: missing, corrupt (its card vouching for it) or
    mismatched (the file changed after the card was written)."""
    model, card = directory / "model.h5", json.loads((ROOT / "model" / "model.json").read_text())
    if damage == "corrupt":
        model.write_bytes(b"not an HDF5 file at all")
        card["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    elif damage == "mismatched":
        model.write_bytes((ROOT / "model" / "model.h5").read_bytes()[:-8] + b"\xff" * 8)
    shutil.copy(ROOT / "model" / "reader.h5", directory / "reader.h5")
    (directory / "model.json").write_text(json.dumps(card))
    return model


@pytest.mark.parametrize("damage, line", [
    ("missing", "cannot read the model"),
    ("corrupt", "is not a Keras model that can be loaded"),
    ("mismatched", "the two do not belong together"),
])
def test_a_model_it_cannot_vouch_for_stops_start_up_with_one_clear_line_and_status_1(tmp_path, damage, line):
    process = start(free_port(), MODEL_PATH=str(damaged_model(tmp_path, damage)))
    try:
        process.wait(timeout=60)
    finally:
        stop(process)
    output = process.output()
    assert process.returncode == 1, output
    refusals = [text for text in output.splitlines() if "cannot start" in text]
    assert len(refusals) == 1 and refusals[0].startswith("digit-recognition cannot start: ") and line in refusals[0]
    assert "Traceback" not in output and "Booting worker" not in output


def test_a_worker_stuck_while_loading_the_model_is_replaced_after_the_timeout(tmp_path):
    """A model file that never finishes reading (here a named pipe that is written once, for the master's
    check, and never again) holds each worker in its start-up. The master replaces such a worker after
    `timeout`, as it does a worker stuck in a request, rather than wait for it for ever."""
    model = tmp_path / "model.h5"
    for name in ("model.json", "reader.h5", "hands.h5"):
        shutil.copy(ROOT / "model" / name, tmp_path / name)
    os.mkfifo(model)
    process = start(free_port(), MODEL_PATH=str(model), GUNICORN_CMD_ARGS="--timeout 5")
    try:
        with open(model, "wb") as pipe:  # opens once the master reads, for its check before the workers start
            pipe.write((ROOT / "model" / "model.h5").read_bytes())
        first = wait_for(lambda: workers_of(process), 60, "workers started")
        wait_for(lambda: "WORKER TIMEOUT" in process.output(), 60, "a stuck worker timed out")
        wait_for(lambda: workers_of(process) - first, 60, "a worker started in its place")
        assert process.poll() is None
    finally:
        kill(process)  # a worker stuck in the pipe would hold SIGTERM up for graceful_timeout


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
