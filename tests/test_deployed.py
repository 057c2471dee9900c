"""The service as a dyno runs it: the Procfile's server from a virtualenv of requirements.txt alone.

Every other test runs in the development virtualenv, where tensorflow-cpu (for training) would hide a
serving dependency that only it brings in, and where Keras could pick TensorFlow. Heroku installs
requirements.txt and nothing else."""

from pathlib import Path

import pytest

from scripts.processes import serving_venv
from tests.conftest import ROOT
from tests.images import draw_number, encode, mnist_style
from tests.servers import post, running, workers_of

SERVING_VENV = ROOT / ".venv-serve"  # the one scripts/bench.py measures


@pytest.fixture(scope="module")
def environment():
    """PATH to a virtualenv of requirements.txt alone, made or brought up to date."""
    return serving_venv(SERVING_VENV)


@pytest.fixture(scope="module")
def deployed(environment):
    with running(**environment) as started:
        yield started


def test_requirements_txt_alone_brings_no_tensorflow(environment):
    packages = {path.name.split("-")[0].lower()
                for path in SERVING_VENV.glob("lib/python3*/site-packages/*.dist-info")}
    assert {"flask", "gunicorn", "keras", "jax", "gevent", "scipy"} <= packages
    assert not [name for name in packages if name.startswith("tensorflow")]


def test_the_deployed_server_reads_digits_and_numbers_on_jax(deployed):
    port, process = deployed
    status, _, body = post(port, encode(mnist_style(7)), "image/png")
    assert status == 200 and body["digit"] == 7
    status, _, body = post(port, encode(draw_number("305", ink=0, background=255)[0]), "image/png", "/read.json")
    assert status == 200 and body["number"] == "305"
    for worker in workers_of(process):
        libraries = Path(f"/proc/{worker}/maps").read_text()
        assert "jaxlib" in libraries and "tensorflow" not in libraries
        assert str(SERVING_VENV) in libraries  # its Python packages, not the development ones
