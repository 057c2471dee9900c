"""Fixtures: the real app on the committed model, its test client, and a place for test artefacts."""

import os
from pathlib import Path

import pytest

from app import create_app

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = Path(os.environ.get("TEST_ARTEFACTS", ROOT / "test-artefacts"))


@pytest.fixture
def app():
    return create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def artefacts():
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS
