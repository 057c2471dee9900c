"""Hold 64 clients on the Procfile server for 50,000 requests: no errors, memory flat, metrics right.

    python scripts/loadtest.py              # needs `hey` (apt-get install hey); 2 to 4 minutes

Starts the Procfile's web line (two gevent workers) from the serving virtualenv as scripts/bench.py does,
warms it up, reads the whole server's RSS and PSS (master and workers), then runs four `hey` clients at
once, 64 connections in all, each sending one kind of request:

  mnist     40 connections   a 28x28 MNIST test digit, PNG            expects 200
  photo     12 connections   a phone-style JPEG of an MNIST digit     expects 200
  broken     8 connections   bytes that are not an image              expects 400 invalid_image
  batch      4 connections   64 MNIST digits in one request           expects 200

and reads the memory again. It passes when every request got the answer its kind expects, RSS grew by
less than 10%, and /metrics (added up over both workers) counted exactly the requests sent.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: import scripts and tests

from scripts.bench import BOUNDARY, hey, multipart, ready_to_measure  # noqa: E402
from scripts.processes import free_port, megabytes, procfile_web_line, serving_venv, wait_until_healthy  # noqa: E402
from scripts.evaluate import multipart_body  # noqa: E402
from scripts.make_eval_set import photo  # noqa: E402

# name: (connections, share of the requests, expected status)
KINDS = {"mnist": (40, 0.86, 200), "photo": (12, 0.06, 200), "broken": (8, 0.06, 400), "batch": (4, 0.02, 200)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000, help="requests in all (%(default)s)")
    parser.add_argument("--service-venv", type=Path, default=ROOT / ".venv-serve")
    args = parser.parse_args(argv)
    digits = ready_to_measure("loadtest.py")
    work = Path(tempfile.mkdtemp(prefix="loadtest-"))
    picture, _, note = photo(digits.x_test[1], np.random.default_rng(1), 0)
    print(f"photo: {note}, {len(picture):,} bytes", file=sys.stderr)
    bodies = {
        "mnist": multipart(work / "mnist.body", digits.x_test[:1]),
        "photo": write(work / "photo.body", multipart_body([("photo.jpg", picture)], BOUNDARY)),
        "broken": write(work / "broken.body", multipart_body([("broken.png", b"\x89PNG not really" * 64)], BOUNDARY)),
        "batch": multipart(work / "batch.body", digits.x_test[:64]),
    }
    port = free_port()
    env = {**os.environ, **serving_venv(args.service_venv), "PORT": str(port), "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(["bash", "-c", "exec " + procfile_web_line()], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_healthy(port, server)
        url = f"http://127.0.0.1:{port}/recognize.json"
        hey(url, bodies["mnist"], "-n", "2000", "-c", "32")  # warm-up: every code path, allocator settled
        hey(url, bodies["batch"], "-n", "50", "-c", "2")
        before = memory(server.pid), metrics(port)
        results = {}

        def run(kind):
            connections, share, _ = KINDS[kind]
            count = max(connections, round(args.requests * share / connections) * connections)  # hey: n per conn
            results[kind] = hey(url, bodies[kind], "-n", str(count), "-c", str(connections), "-t", "60")

        threads = [threading.Thread(target=run, args=(kind,)) for kind in KINDS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = memory(server.pid), metrics(port)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    return report(results, before, after)


def write(path, data):
    path.write_bytes(data)
    return path


def memory(pid):
    """The whole server's RSS and PSS in MB (master and workers)."""
    workers = len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    return {"RSS MB": megabytes(pid, "Rss"), "PSS MB": megabytes(pid), "workers": workers}


def metrics(port):
    """Recognition requests counted by /metrics, by status, over all workers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^digit_recognition_requests_total\{endpoint="/recognize.json",method="POST",'
                       r'status="(\d+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {int(status): float(count) for status, count in found}


def report(results, before, after):
    print(f"\n{'kind':8}{'requests':>10}{'conns':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}  answers")
    wrong, sent = 0, {}
    for kind, result in results.items():
        connections, _, expected = KINDS[kind]
        total = sum(result["statuses"].values()) + result["no answer"]
        wrong += total - result["statuses"].get(expected, 0)
        for status, count in result["statuses"].items():
            sent[status] = sent.get(status, 0) + count
        answers = ", ".join(f"{count} x {status}" for status, count in sorted(result["statuses"].items()))
        if result["no answer"]:
            answers += f", {result['no answer']} without an answer"
        print(f"{kind:8}{total:>10,}{connections:>7}{result['rps']:>9,.0f}{result['p50']:>9.1f}{result['p99']:>9.1f}"
              f"  {answers} (expected {expected})")
    (memory_before, counted_before), (memory_after, counted_after) = before, after
    growth = memory_after["RSS MB"] / memory_before["RSS MB"] - 1
    counted = {status: counted_after.get(status, 0) - counted_before.get(status, 0) for status in counted_after}
    counted = {status: int(count) for status, count in counted.items() if count}
    print(f"\nrequests: {sum(sent.values()):,}; wrong or missing answers: {wrong}")
    print(f"memory: RSS {memory_before['RSS MB']:.0f} -> {memory_after['RSS MB']:.0f} MB ({growth:+.1%}), "
          f"PSS {memory_before['PSS MB']:.0f} -> {memory_after['PSS MB']:.0f} MB, "
          f"workers {memory_before['workers']} -> {memory_after['workers']}")
    print(f"/metrics counted {counted}; clients saw {dict(sorted(sent.items()))}")
    passed = wrong == 0 and growth < 0.10 and counted == sent
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
