"""The app starts only on a model it can vouch for, and takes its configuration from the environment."""

import json
import shutil

import pytest

from app import create_app
from app.predictor import ModelError, Predictor
from tests.conftest import ROOT

MODEL = ROOT / "model" / "model.h5"
READER = ROOT / "model" / "reader.h5"
HANDS = ROOT / "model" / "hands.h5"
CARD = ROOT / "model" / "model.json"


@pytest.fixture
def model_copy(tmp_path):
    for path in (MODEL, READER, HANDS, CARD):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "model.h5"


def test_a_missing_model_file_refuses_to_start(tmp_path):
    with pytest.raises(ModelError, match="cannot read the model"):
        create_app({"MODEL_PATH": str(tmp_path / "model.h5")})


def test_a_model_that_does_not_match_its_card_refuses_to_start(model_copy):
    with model_copy.open("r+b") as file:
        file.seek(-100, 2)
        file.write(b"\xff" * 8)
    with pytest.raises(ModelError, match="do not belong together"):
        Predictor.load(model_copy)


def test_a_corrupt_model_with_a_matching_card_refuses_to_start(model_copy):
    import hashlib

    model_copy.write_bytes(b"not an HDF5 file at all")
    card = json.loads(CARD.read_text())
    card["sha256"] = hashlib.sha256(model_copy.read_bytes()).hexdigest()
    model_copy.with_name("model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a Keras model"):
        Predictor.load(model_copy)


@pytest.mark.parametrize("missing, message", [("refusal", "no refusal threshold"), ("reader", "names no reader")])
def test_a_card_without_its_refusal_threshold_or_its_reader_refuses_to_start(model_copy, missing, message):
    card = json.loads(CARD.read_text())
    del card[missing]
    model_copy.with_name("model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message):
        Predictor.load(model_copy)


@pytest.mark.parametrize("file, what", [("reader.h5", "the reader"), ("hands.h5", "the network of many hands")])
@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_network_beside_the_classifier_missing_or_not_the_cards_refuses_to_start(model_copy, file, what, damage):
    network = model_copy.with_name(file)
    if damage == "missing":
        network.unlink()
        message = f"cannot read {what}"
    else:
        network.write_bytes(network.read_bytes()[:-8] + b"\xff" * 8)
        message = f"is not {what} that .* describes"
    with pytest.raises(ModelError, match=message):
        Predictor.load(model_copy)


def test_a_broken_card_refuses_to_start(model_copy):
    model_copy.with_name("model.json").write_text("{")
    with pytest.raises(ModelError, match="not valid JSON"):
        Predictor.load(model_copy)


def test_configuration_comes_from_the_environment(monkeypatch, model_copy):
    monkeypatch.setenv("MAX_BATCH", "5")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "12345")
    monkeypatch.setenv("MODEL_PATH", str(model_copy))
    app = create_app()
    assert app.config["MAX_BATCH"] == 5
    assert app.config["MAX_CONTENT_LENGTH"] == 12345
    assert app.config["MODEL_PATH"] == str(model_copy)


def test_time_limit_confidence_and_cors_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REQUEST_TIMEOUT", "2.5")
    monkeypatch.setenv("LOW_CONFIDENCE", "0.9")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    app = create_app({"TESTING": True})
    assert app.config["REQUEST_TIMEOUT"] == 2.5 and app.config["LOW_CONFIDENCE"] == 0.9
    preflight = app.test_client().options("/recognize.json", headers={
        "Origin": "https://b.example", "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://b.example"
    other = app.test_client().options("/recognize.json", headers={
        "Origin": "https://c.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_malformed_setting_names_itself(monkeypatch):
    monkeypatch.setenv("MAX_BATCH", "many")
    with pytest.raises(ValueError, match="MAX_BATCH"):
        create_app()


@pytest.fixture
def model_with_lines(model_copy):
    for name in ("lines.h5", "lines.json"):
        shutil.copy(ROOT / "model" / name, model_copy.with_name(name))
    return model_copy


@pytest.mark.parametrize("damage, message", [("missing", "cannot read the line reader"),
                                             ("changed", "is not the line reader that .* describes"),
                                             ("alphabet", "reads '0123456789', not the service's")])
def test_a_line_reader_missing_or_not_the_one_its_card_describes_refuses_to_start(model_with_lines, damage, message):
    lines, card_path = model_with_lines.with_name("lines.h5"), model_with_lines.with_name("lines.json")
    if damage == "missing":
        lines.unlink()
    elif damage == "changed":
        lines.write_bytes(lines.read_bytes()[:-8] + b"\xff" * 8)
    else:
        card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "alphabet": "0123456789"}))
    with pytest.raises(ModelError, match=message):
        Predictor.load(model_with_lines)


def test_without_a_line_reader_the_number_is_read_as_before_and_its_text_is_its_digits(model_copy):
    from tests.images import draw_number, encode
    from tests.test_read import read

    client = create_app({"TESTING": True, "MODEL_PATH": str(model_copy)}).test_client()
    assert "line_reader" not in client.get("/model.json").get_json()
    answer = read(client, encode(draw_number("3.50", ink=0, background=255)[0])).get_json()
    assert answer["text"] == answer["number"] and answer["marks"] == []
    assert answer["number"].endswith("50")
