"""The Procfile's server as a process on this machine: how to start it, when it is ready, and what it costs.
Shared by the measuring scripts (bench.py, loadtest.py, slow_clients.py) and the tests (tests/servers.py)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StartError(RuntimeError):
    """A server that exited, or did not answer /healthz, while it was starting."""


def procfile_web_line():
    """The command the Procfile runs as Heroku's web process."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise StartError("the Procfile has no web line")


def free_port():
    """A loopback port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(port, process, seconds=120):
    """The first /healthz answer of the server `process` started on `port` (its JSON), once one worker
    serves (another may still be loading its model)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"the server exited during start-up with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return json.load(response)
        except OSError:  # not listening yet, or listening while the workers still load the model
            time.sleep(0.05)
    raise StartError(f"no /healthz answer within {seconds} s")


def serving_venv(venv):
    """The environment that runs the service as deployed: a virtualenv of requirements.txt alone, without
    the training stack (TensorFlow), which Keras would otherwise import while reading the .h5 file. Made
    if missing, brought up to date if not."""
    if not (venv / "bin" / "python").exists():
        print(f"making {venv} from requirements.txt ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
                   check=True)
    return venv_environment(venv)


def venv_environment(venv):
    """The environment that serves from a virtualenv as it is: its programs first on PATH, two workers."""
    return {"PATH": os.pathsep.join([str(venv.resolve() / "bin"), os.environ.get("PATH", "")]), "WEB_CONCURRENCY": "2"}


def process_tree(pid):
    """A process id and those of all its descendants."""
    pids = [pid]
    while pids:
        current = pids.pop()
        yield current
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            pids.extend(int(child) for child in children.read_text().split())


def megabytes(pid, field="Pss"):
    """A memory figure of /proc's smaps_rollup (Pss: shared pages counted once; Rss: in full in each),
    added up over a process and all its descendants."""
    total = 0
    for current in process_tree(pid):
        rollup = Path(f"/proc/{current}/smaps_rollup")
        if rollup.exists():
            total += int(re.search(rf"^{field}:\s+(\d+) kB", rollup.read_text(), re.MULTILINE)[1])
    return total / 1024


def cpu_seconds(pid):
    """User and system CPU time so far of a process and its living descendants (/proc's stat)."""
    ticks = 0
    for current in process_tree(pid):
        stat = Path(f"/proc/{current}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
