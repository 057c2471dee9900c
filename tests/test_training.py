"""scripts/train.py end to end in quick mode, its data errors, and the committed model and card."""

import io
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from app.predictor import ModelError, Predictor, checked_card
from scripts import evaluate, handwriting, handwriting_data, mnist_data, optdigits_data, pendigits_data
from scripts import train as train_script
from scripts.calibration import calibration_bins, error_of_bins, expected_calibration_error, softmax
from scripts.model_card import sha256_of
from tests.conftest import ROOT
from tests.images import draw_digit, write_set
from tests.servers import running


@pytest.fixture(scope="module")
def mnist():
    return mnist_data.load_mnist()


def test_the_mnist_copy_is_complete_and_exact(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.x_train.max() == 255
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.sha256 == mnist_data.PICKLE_SHA256


# Every source of many hands, each capped by --quick at a few hundred pictures.
MANY_HANDS = ["--uci-renderings", "2", "--font-digits", "24000", "--uploaded-digits", "15000", "--font-letters", "6000",
              "--alphabet-letters", "8000", "--continental-digits", "8000", "--pen-digits", "16000", "--doodles",
              "--refusal-prior", "0.05"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """scripts/train.py --quick, its reader trained on 1,000 of the classifier's pictures: (output, result)."""
    output = tmp_path_factory.mktemp("quick") / "model.h5"
    result = subprocess.run([sys.executable, "scripts/train.py", "--quick", *MANY_HANDS,
                             "--reader-pictures", "1000", "--output", str(output)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    return output, result


def test_quick_mode_writes_a_model_that_loads_and_predicts_and_a_card_that_matches(quick_run):
    output, result = quick_run
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(output.with_name("model.json").read_text())
    assert card["sha256"] == sha256_of(output)
    assert card["reader"]["sha256"] == sha256_of(output.with_name("reader.h5"))
    assert card["version"].split("-")[1] not in (card["sha256"][:8], card["reader"]["sha256"][:8])  # names both
    assert card["quick"] is True and card["data"]["uci_digits"]["train"] == 200
    assert card["data"]["train"] == 2000  # MNIST's digits, beside the other sources:
    assert card["data"]["sources"]["train"] == {
        "mnist": 2000, "uci": 200 * 2, "font_digits": 300, "mnist_uploaded": 200, "mnist_continental": 100,  # digits
        "pen_digits": 200,
        "strokes_and_symbols": 600, "font_letters": 100, "other_alphabets": 100, "doodles": 300,  # to refuse
        "several_digits": 300}
    assert set(card["by_source"]["test"]) == {"mnist", "font_digits", "mnist_uploaded", "mnist_continental",
                                              "strokes_and_symbols", "font_letters", "other_alphabets",
                                              "held_out_doodles", "several_digits"}
    assert not set(card["data"]["doodles"]["categories"]) & set(card["data"]["doodles"]["held_out_for_the_test"])
    assert card["data"]["handwriting_fonts"]["test"] == [f"{family}-latin-400-normal.woff" for family in
                                                         ("kristi", "neucha", "schoolbell", "zeyada")]
    assert output.with_name("confusion.png").stat().st_size > 10_000
    probabilities = Predictor.load(output).predict(np.zeros((3, 28, 28), dtype=np.uint8))
    assert probabilities.shape == (3, 12)  # ten digits, not a digit, several digits
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert set(card["data"]["other_alphabets"]) == set(handwriting_data.OTHER_ALPHABETS)
    assert card["data"]["other_alphabets"]["cyrillic"]["test"] == [
        "neucha-cyrillic-400-normal.woff: 29 of 29 letters"]  # a font held out
    assert card["data"]["other_alphabets"]["hangul_syllables"]["train"] == [
        "nanum-pen-script-korean-400-normal.woff: 11172 of 11172 letters"]
    assert card["data"]["refusal_pictures"]["train"] == {"not_a_digit": 600 + 100 + 100 + 300, "several_digits": 300}
    assert card["reader"]["classifier_pictures"] == 1000  # of the classifier's 4,600, beside the candidates
    assert card["data"]["pen_digits"]["train"] == 200 and card["data"]["pen_digits"]["digits"] == [0, 2, 3, 6, 8, 9]
    prior = card["calibration"]["refusal_prior"]
    share = 1400 / 4600  # the pictures to refuse, of all the classifier trained on
    assert prior["training_share"] == pytest.approx(share) and prior["assumed"] == 0.05
    assert prior["logit_shift"] == pytest.approx(np.log(share / (1 - share) / (0.05 / 0.95)))
    assert 0.5 <= card["refusal"]["threshold"] <= 1
    assert "test" in result.stdout and "parameters" in result.stdout and "refusal threshold" in result.stdout


def test_reader_only_retrains_the_reader_beside_the_same_classifier_and_updates_the_card(quick_run, tmp_path):
    trained, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    output = shutil.copytree(trained.parent, tmp_path / "models") / trained.name  # the quick run's own stay as written
    before = json.loads(output.with_name("model.json").read_text())
    classifier = output.read_bytes()
    result = subprocess.run([sys.executable, "scripts/train.py", "--quick", *MANY_HANDS, "--reader-only",
                             "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(output.with_name("model.json").read_text())
    assert output.read_bytes() == classifier and card["sha256"] == before["sha256"]
    assert card["reader"]["sha256"] == sha256_of(output.with_name("reader.h5")) != before["reader"]["sha256"]
    assert card["version"] != before["version"]
    assert card["reader"]["classifier_pictures"] == 4600  # all of them, by default
    assert Predictor.load(output).read_pieces(np.zeros((2, 28, 28), dtype=np.uint8)).shape == (2, 12)


@pytest.fixture(scope="module")
def started_run(quick_run, tmp_path_factory):
    """scripts/train.py --quick --start-from the quick run's classifier, at a learning rate too small to move its
    weights: (output, result)."""
    trained, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    output = tmp_path_factory.mktemp("started") / "model.h5"
    result = subprocess.run([sys.executable, "scripts/train.py", "--quick", "--start-from", str(trained),
                             "--learning-rate", "1e-9", "--reader-pictures", "200", "--output", str(output)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    return output, result


def test_a_run_started_from_a_classifier_begins_with_its_weights(quick_run, started_run):
    """--start-from: the new classifier's trained weights are those of the one it started from (a network started
    at random shares none of them), and its card names it."""
    (trained, _), (output, result) = quick_run, started_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(output.with_name("model.json").read_text())["started_from"] == {
        "file": str(trained), "sha256": sha256_of(trained)}
    before, after = ([np.asarray(weight) for weight in Predictor.load(path).model.layers[0].trainable_weights]
                     for path in (trained, output))
    assert len(before) == len(after) == 17  # five kernels, their normalisations' scales and shifts, dense's two
    for start, now in zip(before, after):
        np.testing.assert_allclose(now, start, atol=1e-5)


def test_a_classifier_paired_with_a_network_of_many_hands_answers_with_the_mean_of_both(quick_run, started_run,
                                                                                        mnist, tmp_path):
    """--hands: the network is copied beside the classifier and named in the card with the pair's temperature and
    threshold; the service's probabilities are the mean of the two networks' at that temperature; a network
    that is not the card's stops start-up."""
    (trained, first), (hands, second) = quick_run, started_run
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
    output = shutil.copytree(trained.parent, tmp_path / "models") / trained.name
    before = json.loads(output.with_name("model.json").read_text())
    result = subprocess.run([sys.executable, "scripts/train.py", "--quick", *MANY_HANDS, "--hands", str(hands),
                             "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(output.with_name("model.json").read_text())
    assert card["hands"]["sha256"] == sha256_of(output.with_name("hands.h5")) == sha256_of(hands)
    assert card["sha256"] == before["sha256"] and card["version"] != before["version"]
    assert card["hands"]["classifier_alone"]["refusal"] == before["refusal"]["threshold"]
    assert 0.5 <= card["refusal"]["threshold"] <= 1 and "mean of the two networks" in card["refusal"]["rule"]
    digits = mnist.x_test[:300]
    alone = [Predictor.load(path).predict(digits) for path in (trained, hands)]
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # two networks that answer differently
    paired = Predictor.load(output)
    mean = ((alone[0] + alone[1]) / 2) ** (1 / card["hands"]["temperature"])
    np.testing.assert_allclose(paired.predict(digits), mean / mean.sum(axis=1, keepdims=True), atol=1e-6)
    assert paired.refusal_threshold == card["refusal"]["threshold"]
    np.testing.assert_allclose(paired.classify(digits), alone[0], atol=1e-6)  # /read.json's candidates: alone
    assert paired.reading_threshold == before["refusal"]["threshold"]
    output.with_name("hands.h5").write_bytes(hands.with_name("reader.h5").read_bytes())  # another network
    with pytest.raises(ModelError, match="is not the network of many hands that .* describes"):
        checked_card(output)


def test_starting_from_a_missing_classifier_is_one_clear_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, "scripts/train.py", "--quick", "--start-from", str(tmp_path / "no.h5"),
                             "--output", str(tmp_path / "model.h5")], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"train.py: --start-from {tmp_path / 'no.h5'}: no such file "
                                     "(a model.h5 this script wrote)")
    assert not (tmp_path / "model.h5").exists()


def test_the_card_records_what_evaluate_measures_on_real_pictures_of_the_model_it_describes(quick_run, tmp_path):
    """scripts/evaluate.py --card writes its per-kind scores into the card of the model served, and no other."""
    trained, first = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    output = shutil.copytree(trained.parent, tmp_path / "models") / trained.name
    scans = write_set(tmp_path / "usps-train", ["file", "label", "kind", "source"], [
        *((draw_digit(digit, (16, 16), 12, 1, ink=0, background=255), str(digit), "one-digit-scan-16px", "drawn")
          for digit in range(10)),
        (draw_digit("H", (64, 64), 50, 5, ink=0, background=255), "", "non-letter", "drawn")])
    committed = shutil.copy(ROOT / "model" / "model.json", tmp_path / "committed.json")
    committed_card = committed.read_bytes()
    measured = tmp_path / "measured.json"
    with running(MODEL_PATH=str(output)) as (port, _):
        url = f"http://127.0.0.1:{port}"
        arguments = ["--set", str(scans), "--url", url, "--sheet", str(tmp_path / "misses.png")]
        assert evaluate.main([*arguments, "--json", str(measured), "--card", str(output.with_name("model.json"))]) == 0
        assert evaluate.main([*arguments, "--card", str(committed)]) == 2  # a card of another model
    card = json.loads(output.with_name("model.json").read_text())
    scores = json.loads(measured.read_text())["scores"]
    assert card["real_handwriting"]["usps-train"]["scores"] == scores
    digits = scores["/recognize.json"]["one-digit-scan-16px"]
    assert set(scores) == {"/recognize.json", "/read.json"} and digits["images"] == 10
    assert card["calibration"]["peoples_digits"] == {  # people's digits together: here USPS's alone
        "over": ["usps-train: one-digit-scan-16px"], "digits": 10, "ece_15_bins": digits["ece_15_bins"]}
    assert committed.read_bytes() == committed_card


def test_the_calibration_error_of_sets_measured_apart_is_that_of_all_their_pictures_together():
    rng = np.random.default_rng(0)
    sets = [(rng.dirichlet(np.full(10, alpha), size), rng.integers(10, size=size))
            for alpha, size in [(0.1, 500), (0.5, 300), (2.0, 200)]]  # sure, unsure and very unsure answers
    added = [list(map(sum, zip(*bins))) for bins in zip(*(calibration_bins(*one_set) for one_set in sets))]
    together = expected_calibration_error(np.concatenate([p for p, _ in sets]), np.concatenate([y for _, y in sets]))
    assert error_of_bins(added) == pytest.approx(together) and together > 0.05
    assert [error_of_bins(calibration_bins(*one_set)) for one_set in sets] != [together] * 3


def train(*arguments):
    """Run scripts/train.py as a person does; its exit code and what it wrote to standard error."""
    result = subprocess.run([sys.executable, "scripts/train.py", *arguments], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    return result.returncode, result.stderr


def assert_one_clear_line(error, *phrases):
    assert error.count("\n") == 1 and error.startswith("train.py: "), error
    assert "Traceback" not in error
    for phrase in phrases:
        assert phrase in error


def test_a_missing_data_file_is_one_clear_line_and_exit_code_2(tmp_path):
    code, error = train("--data", str(tmp_path / "mnist.npz"))
    assert code == 2
    assert_one_clear_line(error, "does not exist", "--data")


def test_a_corrupt_data_file_is_one_clear_line_and_exit_code_2(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    code, error = train("--data", str(tmp_path / "mnist.npz"))
    assert code == 2
    assert_one_clear_line(error, "is not an mnist.npz")


def test_a_npz_with_the_wrong_arrays_is_one_clear_line(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 5)), y_train=np.zeros(2))
    code, error = train("--data", str(tmp_path / "mnist.npz"))
    assert code == 2
    assert_one_clear_line(error)


def test_a_corrupt_cached_wheel_is_one_clear_line(tmp_path):
    with zipfile.ZipFile(tmp_path / mnist_data.WHEEL_NAME, "w") as wheel:
        wheel.writestr(mnist_data.PICKLE_MEMBER, b"tampered")
    code, error = train("--cache-dir", str(tmp_path))
    assert code == 2
    assert_one_clear_line(error, "expected " + mnist_data.PICKLE_SHA256, "delete it")


@pytest.mark.parametrize("data, flag", [(optdigits_data, "--uci-renderings"), (pendigits_data, "--pen-digits")],
                         ids=["uci", "pen_digits"])
def test_a_tampered_cached_keel_wheel_is_one_clear_line(tmp_path, mnist, data, flag):
    (tmp_path / mnist_data.WHEEL_NAME).symlink_to(mnist_data.DEFAULT_CACHE / mnist_data.WHEEL_NAME)
    with zipfile.ZipFile(tmp_path / optdigits_data.WHEEL_NAME, "w") as wheel:
        wheel.writestr(data.CSV_MEMBER, b"0,0,0\n")
    code, error = train("--cache-dir", str(tmp_path), flag, "2")
    assert code == 2
    assert_one_clear_line(error, "expected " + data.CSV_SHA256, "delete it")


def test_lowering_the_refusal_logits_by_the_shift_moves_their_prior_to_the_one_asked_for():
    labels = np.repeat([3, 10, 11], [60, 25, 15])  # 40% of the training pictures are to refuse
    logits = np.zeros((1, 12))
    logits[0, 10:] = np.log(0.4 / 0.6 * 10 / 2)  # a picture the network puts at the training prior
    assert softmax(logits)[0, 10:].sum() == pytest.approx(0.4)
    for prior in (0.4, 0.05, 0.01):
        shifted = logits - np.r_[np.zeros(10), np.full(2, train_script.refusal_logit_shift(labels, prior))]
        assert softmax(shifted)[0, 10:].sum() == pytest.approx(prior)
    assert train_script.refusal_logit_shift(labels, None) == 0


def test_the_pen_digits_are_the_44_writers_one_stroke_digits_but_1_each_drawn_as_one_stroke_in_mnist_proportions(mnist):
    pens = pendigits_data.load_pendigits()
    assert np.bincount(pens.labels, minlength=10).tolist() == [1143, 1143, 1144, 1055, 0, 0, 1056, 0, 1055, 1055]
    assert pens.paths.shape == (7651, 8, 2) and pens.paths.min() == 0 and pens.paths.max() == 100
    rng = np.random.default_rng(0)
    for index in range(0, 7651, 150):
        drawn = handwriting.pen_path(pens.paths[index], 0.4, rng)
        assert handwriting._pieces(drawn) == 1
        assert drawn.shape[1] < 0.85 * drawn.shape[0]  # narrow as asked (and slanted), not square as stored
    pictures, labels = train_script.pen_pictures(pens, 300, mnist.x_train[:5000], mnist.y_train[:5000], rng)
    aspects = train_script.ink_aspects(pictures)
    assert set(labels.tolist()) == {0, 2, 3, 6, 8, 9}  # no 1: its flag would read MNIST's 7s as 1
    mnist_aspects = train_script.ink_aspects(mnist.x_train[:5000])
    for digit in (0, 3):  # in the proportions of MNIST's digits of the class, not the square they are stored in
        assert np.median(aspects[labels == digit]) == pytest.approx(
            np.median(mnist_aspects[mnist.y_train[:5000] == digit]), abs=0.12)


def test_the_uci_training_digits_are_the_30_writers_split_and_none_is_an_evaluation_digit():
    from sklearn.datasets import load_digits

    uci = optdigits_data.load_optdigits_training()
    assert uci.images.shape == (3823, 8, 8) and uci.images.max() == 16
    assert np.bincount(uci.labels).tolist() == [376, 389, 380, 389, 387, 376, 377, 387, 380, 382]
    evaluation = {row.astype(np.uint8).tobytes() for row in load_digits().data}
    assert not any(image.tobytes() in evaluation for image in uci.images)


def test_the_training_pictures_are_the_same_whatever_the_number_of_processes(mnist, monkeypatch):
    """Drawn in chunks of their own seeds: a retrain on another machine draws the same pictures."""
    fonts = (train_script.glyphs.font_files(evaluation=False), handwriting_data.font_files(evaluation=False),
             train_script.letters_by_alphabet(handwriting_data.alphabet_fonts(evaluation=False)))
    counts = {"non_digits": 24, "font_digits": 20, "font_letters": 8, "uploaded": 16, "alphabet_letters": 8,
              "continental": 6}
    first = train_script.split_pictures(mnist.x_train[:50], mnist.y_train[:50], counts, fonts, 7)
    monkeypatch.setattr(train_script.os, "sched_getaffinity", lambda pid: {0})
    again = train_script.split_pictures(mnist.x_train[:50], mnist.y_train[:50], counts, fonts, 7)
    for array, same in zip(first, again):
        np.testing.assert_array_equal(array, same)
    assert np.bincount(first[1]).tolist()[10:] == [24 + 8 + 8, 12]
    sources, their_counts = np.unique(first[2], return_counts=True)
    assert dict(zip(sources.tolist(), their_counts.tolist())) == {
        "mnist": 50, "strokes_and_symbols": 24, "several_digits": 12, "font_digits": 20, "font_letters": 8,
        "other_alphabets": 8, "mnist_uploaded": 16, "mnist_continental": 6}
    assert set(first[1][first[2] == "mnist_continental"].tolist()) <= {1, 7}


def test_a_pickle_that_builds_anything_but_arrays_is_refused():
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        mnist_data._ArraysOnly(io.BytesIO(pickle.dumps(Payload()))).load()


def test_the_committed_card_describes_the_committed_model():
    card = json.loads((ROOT / "model" / "model.json").read_text())
    assert card["sha256"] == sha256_of(ROOT / "model" / "model.h5")
    assert card["reader"]["sha256"] == sha256_of(ROOT / "model" / "reader.h5")
    assert card["quick"] is False
    assert card["calibration"]["test_ece_15_bins_after"] <= 0.01
    assert card["accuracy"]["test"] >= 0.996
    assert card["refusal"]["test"]["digits_read_right"] >= 0.996
    assert card["by_source"]["test"]["strokes_and_symbols"]["refused"] >= 0.95  # letters, symbols, shapes
    if card.get("hands"):
        assert card["hands"]["sha256"] == sha256_of(ROOT / "model" / card["hands"]["file"])
        assert card["hands"]["test"]["accuracy"] >= 0.996 and card["hands"]["test"]["ece_15_bins"] <= 0.01


def test_the_committed_model_reads_996_percent_of_mnist_test_through_the_service_calibrated(client, mnist):
    """Every test digit as a PNG upload, 64 to a request: preprocessing, refusal and calibration included. A
    refused digit counts as a miss; calibration (ECE, 15 bins) is measured on the confidence the service
    gives, a refusal's closest digit included."""
    answers = []
    for start in range(0, len(mnist.x_test), 64):
        files = []
        for i, digit in enumerate(mnist.x_test[start : start + 64]):
            buffer = io.BytesIO()
            Image.fromarray(digit).save(buffer, "PNG")
            files.append((io.BytesIO(buffer.getvalue()), f"{start + i}.png"))
        response = client.post("/recognize.json", data={"image": files})
        assert response.status_code == 200
        answers.extend(response.get_json()["predictions"])
    predicted = np.array([answer.get("digit", -1) for answer in answers])
    accuracy = np.mean(predicted == mnist.y_test)
    print(f"MNIST test accuracy through the service, refusals counted as misses: {accuracy:.2%}")
    assert accuracy >= 0.996
    read = np.array([answer.get("error", {}).get("closest", answer)["probabilities"] for answer in answers])
    ece = expected_calibration_error(read, mnist.y_test)
    print(f"ECE of the service's answers: {ece:.2%}")
    assert ece <= 0.01
