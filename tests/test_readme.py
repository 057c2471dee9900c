"""The README's examples are real: its commands make the pictures, and each `curl -F` it shows with an
answer gets that answer from the service (up to the first `...` where the README shortens it)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
PICTURES = re.findall(r"^\.venv/bin/python -c '(.*\.save\(\"([\w-]+\.png)\"\).*)'$", README, re.MULTILINE)
EXAMPLES = re.findall(r"^\$ curl -F image=@([\w-]+\.png) http://localhost:5000(/\S+)(?: +#.*)?\n(\{.*\})$", README,
                      re.MULTILINE)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """The pictures, written by the README's own commands."""
    folder = tmp_path_factory.mktemp("readme")
    for code, _ in PICTURES:
        subprocess.run([sys.executable, "-c", code], cwd=folder, check=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return folder


def test_the_readme_shows_answers_for_each_endpoint():
    assert {name for _, name in PICTURES} == {"digit.png", "number.png", "letter-H.png"}
    assert {path for _, path, _ in EXAMPLES} == {"/recognize.json", "/read.json"}


@pytest.mark.parametrize("picture, path, shown", EXAMPLES, ids=[f"{p} {e}" for p, e, _ in EXAMPLES])
def test_each_curl_example_gets_the_answer_the_readme_shows(client, pictures, picture, path, shown):
    with open(pictures / picture, "rb") as file:
        answer = client.post(path, data={"image": (file, picture)}).get_data(as_text=True).strip()
    assert answer.startswith(shown.split("...")[0]) if "..." in shown else answer == shown
