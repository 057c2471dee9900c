"""Measure the service side by side with the seeds' way and Flask's floor, in one run on one machine.

    python scripts/bench.py                 # needs `hey` (apt-get install hey); about 20 minutes

Starts, one at a time on free loopback ports, timing each from launch to its first /healthz answer
(`--starts` times in turns, the last start kept running):
  service      the Procfile's web line (gunicorn.conf.py, WEB_CONCURRENCY=2): gevent workers
  baseline     the same from another checkout (--baseline-checkout, e.g. `git worktree add` of another
               commit) or another virtualenv (--baseline-venv, used as it is), or both: a change side by side
  sync         the same with gunicorn's sync workers (GUNICORN_CMD_ARGS=--worker-class sync), as it served
               before its workers held slow clients cheaply
  nginx+sync   nginx in front of the sync workers on a UNIX socket, as Heroku's nginx buildpack runs them
               (when nginx is installed)
  seeds' way   the same model file, Keras on TensorFlow, model.predict per request, gunicorn -w 2
  floor        a Flask hello-world that reads the upload and answers a fixed JSON, gunicorn -w 2
then drives them with `hey` in rounds, taking turns within each round, so that a burst of load from
elsewhere on a shared machine falls on one turn rather than on one server: one 28x28 PNG (an MNIST test
digit) per multipart request at 1 and at 32 clients (keeping connections open, as Heroku's router does,
and again opening one per request), then (service and sync) 64 images per request at 2 and a 4-digit
number (four MNIST test digits side by side, 28 px tall) to /read.json at 1 client.
Prints one table of the rounds' medians: cold start, p50/p99, requests/s, the server's CPU time per
request at 32 clients (master and workers, from /proc: what a request costs the machine, less swayed by
the load generator and by other work on a shared machine than requests/s), images/s, errors (all
rounds), and each whole server's PSS (master and workers), measured after one more round with the
server started again alone, as it runs on a dyno.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: import scripts

from scripts.evaluate import multipart_body  # noqa: E402
from scripts.make_eval_set import to_bytes  # noqa: E402
from scripts.mnist_data import DataError, load_mnist  # noqa: E402
from scripts.processes import (StartError, cpu_seconds, free_port, megabytes, procfile_web_line,  # noqa: E402
                               serving_venv, venv_environment, wait_until_healthy)

BOUNDARY = "benchboundary7d1f"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="turns each server gets; medians are printed (%(default)s)")
    parser.add_argument("--requests", type=int, default=4_000, help="requests at 32 clients, per round (%(default)s)")
    parser.add_argument("--seeds-requests", type=int, default=640,
                        help="requests at 32 clients per round for the seeds' way, which answers a few dozen a second (%(default)s)")
    parser.add_argument("--single", type=int, default=500, help="requests at 1 client, per round (%(default)s)")
    parser.add_argument("--seeds-single", type=int, default=200, help="the same for the seeds' way (%(default)s)")
    parser.add_argument("--batches", type=int, default=100, help="64-image requests at 2 clients, per round (%(default)s)")
    parser.add_argument("--starts", type=int, default=3, help="cold starts each server gets, in turns; medians are printed (%(default)s)")
    parser.add_argument("--service-venv", type=Path, default=ROOT / ".venv-serve",
                        help="a virtualenv with requirements.txt only, as Heroku installs it; made or updated")
    parser.add_argument("--baseline-checkout", type=Path, help="another checkout to serve, as a column of its own")
    parser.add_argument("--baseline-venv", type=Path, help="another virtualenv to serve from, as a column of its own")
    args = parser.parse_args(argv)
    digits = ready_to_measure("bench.py")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    one = multipart(work / "one.body", digits.x_test[:1])
    batch = multipart(work / "batch.body", digits.x_test[:64])
    number = multipart(work / "number.body", [number_picture(digits.x_test[:4])])
    # The baselines start outside the repository so that gunicorn does not pick up ./gunicorn.conf.py,
    # which imports Keras on JAX in the master: they run as plain `gunicorn -w 2`.
    baseline = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT), "-w", "2"]
    service = ["bash", "-c", "exec " + procfile_web_line()]
    deployed = serving_venv(args.service_venv)
    beside = {}  # the service from another checkout or virtualenv, when one is given
    if args.baseline_checkout or args.baseline_venv:
        environment = venv_environment(args.baseline_venv) if args.baseline_venv else deployed
        beside["baseline"] = (service, environment, args.baseline_checkout or ROOT, args.single, args.requests, batch,
                              number)
    servers = {  # name: command, environment, working directory, requests at 1 and at 32 clients, batch and
        # number bodies
        "service": (service, deployed, ROOT, args.single, args.requests, batch, number),
        **beside,
        "sync": (service, {**deployed, "GUNICORN_CMD_ARGS": "--worker-class sync"}, ROOT, args.single, args.requests,
                 batch, number),
        **nginx_in_front(work, deployed, args, batch, number),
        "seeds' way": ([*baseline, "scripts.bench_baselines:seeds_way()"], {}, work, args.seeds_single,
                       args.seeds_requests, None, None),
        "floor": ([*baseline, "scripts.bench_baselines:hello_world()"], {}, work, args.single, args.requests, None,
                  None),
    }
    running, starts = {}, {name: [] for name in servers}
    try:
        for start in range(1, args.starts + 1):
            for name, (command, environment, directory, *_) in servers.items():
                print(f"start {start} of {args.starts}: {name} ...", file=sys.stderr, flush=True)
                if name in running:
                    stop([running.pop(name)])
                running[name] = launch(command, environment, directory, one)
                starts[name].append(running[name]["start"])
        rounds = {name: [] for name in servers}
        for round_number in range(1, args.rounds + 1):
            for name, (*_, single, loaded, batch_body, number_body) in servers.items():
                print(f"round {round_number} of {args.rounds}: {name} ...", file=sys.stderr, flush=True)
                rounds[name].append(drive(running[name], one, batch_body, number_body, single, loaded, args.batches))
    finally:
        stop(running.values())
    results = {name: medians(starts[name]) | medians(rounds[name]) for name in servers}
    for name, (command, environment, directory, single, loaded, batch_body, number_body) in servers.items():
        # Alone, as on a dyno: servers side by side share the pages of the libraries they map, and each
        # one's PSS would count only its share of them.
        print(f"memory: {name} alone ...", file=sys.stderr, flush=True)
        server = launch(command, environment, directory, one)
        try:
            drive(server, one, batch_body, number_body, single, loaded, args.batches)
            results[name]["PSS MB"] = megabytes(server["process"].pid)
        finally:
            stop([server])
    print_table(results, args.rounds, args.starts)
    shutil.rmtree(work)
    return 0


NGINX = """{user} daemon off; worker_processes 1; pid {work}/nginx.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off; client_max_body_size 10m; client_body_buffer_size 1m; keepalive_timeout 100s;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    upstream service {{ server unix:{work}/gunicorn.sock; }}
    server {{
        listen 127.0.0.1:@PORT@;
        location / {{
            proxy_pass http://service; proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def nginx_in_front(work, deployed, args, batch, number):
    """The front that gunicorn's documentation recommends for sync workers, as Heroku's nginx buildpack
    runs it: nginx on $PORT buffering each whole request, the sync workers behind it on a UNIX socket.
    Measured when nginx is installed (apt-get install nginx)."""
    if not shutil.which("nginx"):
        print("bench.py: nginx is not installed: no \"nginx+sync\" column", file=sys.stderr)
        return {}
    user = "user root;" if os.geteuid() == 0 else ""  # its workers must reach the socket in `work` (mode 0700)
    (work / "nginx.conf.template").write_text(NGINX.format(work=work, user=user))
    command = ["bash", "-c", f'sed "s/@PORT@/$PORT/" {work}/nginx.conf.template > {work}/nginx.conf && '
                             f"{{ {procfile_web_line()} & exec nginx -c {work}/nginx.conf; }}"]
    environment = {**deployed, "GUNICORN_CMD_ARGS": f"--worker-class sync --bind unix:{work}/gunicorn.sock"}
    return {"nginx+sync": (command, environment, ROOT, args.single, args.requests, batch, number)}


def stop(servers):
    for server in servers:
        os.killpg(server["process"].pid, signal.SIGTERM)
    for server in servers:
        server["process"].wait(timeout=60)


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


def launch(command, environment, directory, one):
    """Start a server and time it: launch to its first /healthz answer, then one recognition request."""
    port = free_port()
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PORT": str(port), **environment}
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=directory, env=env,  # each binds 0.0.0.0:$PORT, as gunicorn does
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/recognize.json"
    try:
        wait_until_healthy(port, server)
        cold_start = time.perf_counter() - started
        first = timed_request(url, one)
    except BaseException as error:
        os.killpg(server.pid, signal.SIGTERM)
        if isinstance(error, StartError):
            raise SystemExit(f"bench.py: {error}") from None
        raise
    return {"process": server, "url": url,
            "start": {"cold start s": cold_start, "first request ms": first}}


def drive(server, one, batch, number, single, loaded, batches):
    """One round: `single` requests at 1 client, `loaded` at 32, `batches` of 64 images at 2 if given, and
    `single` numbers to /read.json at 1 client if given."""
    url, pid = server["url"], server["process"].pid
    alone = hey(url, one, "-n", str(single), "-c", "1")
    cpu_before = cpu_seconds(pid)
    crowded = hey(url, one, "-n", str(loaded), "-c", "32")
    cpu_per_request = (cpu_seconds(pid) - cpu_before) / loaded * 1000
    fresh = hey(url, one, "-n", str(loaded), "-c", "32", "-disable-keepalive")
    result = {"p50 1 client ms": alone["p50"], "p99 1 client ms": alone["p99"],
              "p50 32 clients ms": crowded["p50"], "p99 32 clients ms": crowded["p99"],
              "requests/s 32 clients": crowded["rps"], "CPU ms/request 32 clients": cpu_per_request,
              "req/s 32, a connection each": fresh["rps"],
              "errors": alone["errors"] + crowded["errors"] + fresh["errors"]}
    if batch:
        batched = hey(url, batch, "-n", str(batches), "-c", "2")
        result["images/s in 64s"] = batched["rps"] * 64
        result["errors"] += batched["errors"]
    if number:
        numbers = hey(url.replace("/recognize.json", "/read.json"), number, "-n", str(single), "-c", "1")
        result["p50 4-digit read ms"] = numbers["p50"]
        result["p99 4-digit read ms"] = numbers["p99"]
        result["errors"] += numbers["errors"]
    return result


def medians(rounds):
    """Each figure's median over the rounds; errors added up over all of them."""
    return {key: sum(r[key] for r in rounds) if key == "errors" else statistics.median(r[key] for r in rounds)
            for key in rounds[0]}


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


def print_table(results, rounds, starts):
    service, seeds, floor = results["service"], results["seeds' way"], results["floor"]
    rows = ["cold start s", "first request ms", "p50 1 client ms", "p99 1 client ms", "p50 32 clients ms",
            "p99 32 clients ms", "requests/s 32 clients", "CPU ms/request 32 clients", "req/s 32, a connection each",
            "images/s in 64s", "p50 4-digit read ms", "p99 4-digit read ms", "errors", "PSS MB"]
    print(f"\n{'':28}" + "".join(f"{name:>11}" for name in results))
    for row in rows:
        cells = "".join(f"{r[row]:>11,.{2 if 'CPU' in row else 1}f}" if row in r else f"{'-':>11}"
                        for r in results.values())
        print(f"{row:28}{cells}")
    ratio = "requests/s 32 clients", "req/s 32, a connection each"
    others = [name for name in ("baseline", "sync", "nginx+sync") if name in results]
    print(f"\nlatency at 1 client: {seeds['p50 1 client ms'] / service['p50 1 client ms']:.1f}x faster than the "
          f"seeds' way; throughput at 32 clients: {service[ratio[0]] / floor[ratio[0]]:.2f}x the floor with "
          f"connections kept open, {service[ratio[1]] / floor[ratio[1]]:.2f}x with one a request; "
          + "; ".join(f"{service[ratio[0]] / results[name][ratio[0]]:.2f}x and "
                      f"{service[ratio[1]] / results[name][ratio[1]]:.2f}x {name}" for name in others) +
          f" (CPU per request {service['CPU ms/request 32 clients'] / floor['CPU ms/request 32 clients']:.1f}x "
          f"the floor's); a 4-digit number through /read.json "
          f"{service['p50 4-digit read ms'] / service['p50 1 client ms']:.2f}x one digit through /recognize.json; "
          f"medians of {rounds} rounds and {starts} starts; {os.cpu_count()} CPUs")


def multipart(path, digits):
    """A multipart request body file with each picture (an MNIST digit, or a number of them) as a PNG field
    named `image`."""
    pictures = [(f"digit{i}.png", to_bytes(Image.fromarray(digit), "PNG")) for i, digit in enumerate(digits)]
    path.write_bytes(multipart_body(pictures, BOUNDARY))
    return path


def number_picture(digits):
    """MNIST digits side by side, 6 px apart: a number as MNIST would have written it."""
    gap = np.zeros((28, 6), dtype=np.uint8)
    return np.hstack([part for digit in digits for part in (digit, gap)][:-1])


if __name__ == "__main__":
    sys.exit(main())
