"""Measure the service side by side with the seeds' way and Flask's floor, in one run on one machine.

    python scripts/bench.py                 # needs `hey` (apt-get install hey); about 3 minutes

Starts, one at a time on a free loopback port:
  service      the Procfile's web line (gunicorn.conf.py, WEB_CONCURRENCY=2)
  seeds' way   the same model file, Keras on TensorFlow, model.predict per request, gunicorn -w 2
  floor        a Flask hello-world that reads the upload and answers a fixed JSON, gunicorn -w 2
and drives each with `hey`: one 28x28 PNG (an MNIST test digit) per multipart request at 1 and at
32 clients, then (service only) 64 images per request. Prints one table: cold start, p50/p99,
requests/s, images/s, errors and the whole server's PSS (master and workers) after the run.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: import scripts

from scripts.evaluate import multipart_body  # noqa: E402
from scripts.make_eval_set import to_bytes  # noqa: E402
from scripts.mnist_data import DataError, load_mnist  # noqa: E402

BOUNDARY = "benchboundary7d1f"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="requests at 32 clients (%(default)s)")
    parser.add_argument("--seeds-requests", type=int, default=2_000,
                        help="requests at 32 clients for the seeds' way, which answers about 30 a second (%(default)s)")
    parser.add_argument("--single", type=int, default=1_000, help="requests at 1 client (%(default)s)")
    parser.add_argument("--batches", type=int, default=200, help="64-image requests, 2 clients (%(default)s)")
    parser.add_argument("--service-venv", type=Path, default=ROOT / ".venv-serve",
                        help="a virtualenv with requirements.txt only, as Heroku installs it; made or updated")
    args = parser.parse_args(argv)
    digits = ready_to_measure("bench.py")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    one = multipart(work / "one.body", digits.x_test[:1])
    batch = multipart(work / "batch.body", digits.x_test[:64])
    # The baselines start outside the repository so that gunicorn does not pick up ./gunicorn.conf.py,
    # which imports Keras on JAX in the master: they run as plain `gunicorn -w 2`.
    baseline = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT), "-w", "2"]
    servers = {  # name: command, environment, working directory, requests at 32 clients, batch body
        "service": (["bash", "-c", "exec " + procfile_web_line()], serving_venv(args.service_venv), ROOT,
                    args.requests, batch),
        "seeds' way": ([*baseline, "scripts.bench_baselines:seeds_way()"], {}, work, args.seeds_requests, None),
        "floor": ([*baseline, "scripts.bench_baselines:hello_world()"], {}, work, args.requests, None),
    }
    results = {}
    for name, (command, environment, directory, requests, batch_body) in servers.items():
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(command, environment, directory, one, batch_body, requests, args)
    print_table(results)
    shutil.rmtree(work)
    return 0


def ready_to_measure(program):
    """The MNIST digits, once `hey` and the data are there; otherwise one line on stderr and exit status 2."""
    problem = None if shutil.which("hey") else "the load generator `hey` is not installed: apt-get install hey"
    if problem is None:
        try:
            return load_mnist()
        except DataError as error:
            problem = error
    print(f"{program}: {problem}", file=sys.stderr)
    raise SystemExit(2)


def serving_venv(venv):
    """The environment that runs the service as deployed: without the training stack (TensorFlow), which
    Keras would otherwise import while reading the .h5 file. Made if missing, brought up to date if not."""
    if not (venv / "bin" / "python").exists():
        print(f"making {venv} from requirements.txt ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
                   check=True)
    return {"PATH": os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]), "WEB_CONCURRENCY": "2"}


def measure(command, environment, directory, one, batch, requests, args):
    port = free_port()
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PORT": str(port), **environment}
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=directory, env=env,  # each binds 0.0.0.0:$PORT, as gunicorn does
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        cold_start = wait_until_healthy(port, server) - started
        url = f"http://127.0.0.1:{port}/recognize.json"
        first = timed_request(url, one)
        result = {"cold start s": cold_start, "first request ms": first}
        single = hey(url, one, "-n", str(args.single), "-c", "1")
        result.update({"p50 1 client ms": single["p50"], "p99 1 client ms": single["p99"]})
        loaded = hey(url, one, "-n", str(requests), "-c", "32")
        result.update({"p50 32 clients ms": loaded["p50"], "p99 32 clients ms": loaded["p99"],
                       "requests/s 32 clients": loaded["rps"], "errors": single["errors"] + loaded["errors"]})
        if batch:
            batched = hey(url, batch, "-n", str(args.batches), "-c", "2")
            result["images/s in 64s"] = batched["rps"] * 64
            result["errors"] += batched["errors"]
        result["PSS MB"] = megabytes(server.pid)
        return result
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def hey(url, body, *options):
    output = subprocess.run(["hey", *options, "-m", "POST", "-T", f"multipart/form-data; boundary={BOUNDARY}",
                             "-D", str(body), url], capture_output=True, text=True, check=True).stdout
    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
    failures = 0  # connections refused or reset, timeouts: requests that got no HTTP answer at all
    if "Error distribution:" in output:
        failures = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", output.split("Error distribution:")[1], re.MULTILINE))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
            "p50": percentile(output, 50), "p99": percentile(output, 99), "statuses": statuses,
            "no answer": failures, "errors": failures + sum(count for code, count in statuses.items() if code != 200)}


def percentile(output, percent):
    """A latency percentile (ms) from hey's report; NaN when the run was too short to have it."""
    found = re.search(rf"^\s+{percent}%+ in ([\d.]+) secs", output, re.MULTILINE)
    return float(found[1]) * 1000 if found else float("nan")


def timed_request(url, body):
    request = urllib.request.Request(url, data=body.read_bytes(), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def megabytes(pid, field="Pss"):
    """A memory figure of /proc's smaps_rollup (Pss: shared pages counted once; Rss: in full in each),
    added up over a process and all its descendants."""
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            pids.extend(int(child) for child in children.read_text().split())
        rollup = Path(f"/proc/{current}/smaps_rollup")
        if rollup.exists():
            total += int(re.search(rf"^{field}:\s+(\d+) kB", rollup.read_text(), re.MULTILINE)[1])
    return total / 1024


def wait_until_healthy(port, server, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench.py: a server exited during start-up with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench.py: a server did not become healthy within two minutes")


def print_table(results):
    service, seeds, floor = results["service"], results["seeds' way"], results["floor"]
    rows = ["cold start s", "first request ms", "p50 1 client ms", "p99 1 client ms", "p50 32 clients ms",
            "p99 32 clients ms", "requests/s 32 clients", "images/s in 64s", "errors", "PSS MB"]
    print(f"\n{'':24}{'service':>12}{'seeds way':>12}{'floor':>12}")
    for row in rows:
        cells = "".join(f"{r[row]:>12,.1f}" if row in r else f"{'-':>12}" for r in (service, seeds, floor))
        print(f"{row:24}{cells}")
    print(f"\nlatency at 1 client: {seeds['p50 1 client ms'] / service['p50 1 client ms']:.1f}x faster than the "
          f"seeds' way; throughput at 32 clients: {service['requests/s 32 clients'] / floor['requests/s 32 clients']:.2f}"
          f"x the floor; {os.cpu_count()} CPUs")


def procfile_web_line():
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise SystemExit("bench.py: the Procfile has no web line")


def multipart(path, digits):
    """A multipart request body file with each MNIST digit as a PNG field named `image`."""
    pictures = [(f"digit{i}.png", to_bytes(Image.fromarray(digit), "PNG")) for i, digit in enumerate(digits)]
    path.write_bytes(multipart_body(pictures, BOUNDARY))
    return path


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
