"""Score the running service over HTTP on the evaluation set, endpoint by endpoint, category by category.

    python scripts/make_eval_set.py                     # once: build the set
    python scripts/evaluate.py --url http://localhost:5000
    python scripts/evaluate.py --set ../shared/real-dev/usps-train  # a folder of real pictures

Sends the pictures as users do (multipart uploads, up to 64 per request) to the endpoint that reads
their category (make_eval_set.ENDPOINTS: digits to /recognize.json, numbers to /read.json, pictures to
refuse to both), then prints a table per endpoint and category, the misses, and writes a contact sheet of
the misses (the picture sent, what it is, what the service answered and how sure it was); --json writes
the table's shares too, for comparing runs. A picture to refuse counts as right when it is refused
(not_a_digit or several_digits); a number when every digit is read, in order, and where it is written with
marks ("3.50", "12/06") when its text is read exactly.

A folder of real pictures (real-dev: labels.csv with file,label,kind,source) is read too, told apart by
its header: its kind is the category and its source the note; a single digit of a one-digit kind goes to
/recognize.json, any other label to /read.json, and an empty label (no digit) to both, to be refused.
"""

import argparse
import csv
import http.client
import io
import json
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import scripts

from scripts import model_card  # noqa: E402
from scripts.calibration import calibration_bins, error_of_bins  # noqa: E402
from scripts.make_eval_set import ENDPOINTS  # noqa: E402
from scripts.mnist_data import DEFAULT_CACHE  # noqa: E402

CELL = 120
CAPTION = 18
MAX_SHEET = 400
REFUSALS = ("not_a_digit", "several_digits")


class Service:
    """A keep-alive HTTP connection to the service."""

    def __init__(self, url):
        parts = urlsplit(url)
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.connection = connection(parts.hostname, parts.port, timeout=60)
        self.prefix = parts.path.rstrip("/")
        self.model_version = None

    def send(self, endpoint, pictures):
        """One answer ({"digit", ...}, {"number", ...} or {"error": ...}) per picture, in order."""
        boundary = uuid.uuid4().hex
        self.connection.request("POST", self.prefix + endpoint, multipart_body(pictures, boundary),
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = self.connection.getresponse()
        self.model_version = response.getheader("X-Model-Version")
        answer = json.loads(response.read())
        if len(pictures) > 1 and response.status == 200:
            return answer["predictions"]
        return [answer]


def multipart_body(pictures, boundary):
    """A multipart/form-data body with each (file name, bytes) picture as a field named `image`."""
    return b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, data in pictures) + f"--{boundary}--\r\n".encode()


def read_rows(labels):
    """The rows of labels.csv, each with the endpoints that read it; a real-dev folder's rows in the
    evaluation set's columns (category, expected, note), so that the rest reads both alike."""
    with open(labels, newline="") as file:
        reader = csv.DictReader(file)
        if "label" not in reader.fieldnames:
            return [{**row, "endpoints": [endpoint for endpoint, categories in ENDPOINTS.items()
                                          if row["category"] in categories]} for row in reader]
        return [{"file": row["file"], "category": row["kind"], "expected": row["label"] or REFUSALS[0],
                 "note": row["source"], "endpoints": real_dev_endpoints(row)} for row in reader]


def real_dev_endpoints(row):
    """No digit must be refused by both endpoints; one digit of a one-digit kind is /recognize.json's to read,
    and anything else (a number, or one digit cut from a line) is /read.json's."""
    if not row["label"]:
        return list(ENDPOINTS)
    if len(row["label"]) == 1 and row["kind"].startswith("one-digit"):
        return ["/recognize.json"]
    return ["/read.json"]


def score(service, root, rows, batch_size, batch_bytes):
    """Each row of labels.csv with the endpoint and its answer added, once for each endpoint that reads it."""
    results = []
    for endpoint in ENDPOINTS:
        theirs = [row for row in rows if endpoint in row["endpoints"]]
        for chunk in batches(root, theirs, batch_size, batch_bytes):
            answers = service.send(endpoint, [(Path(row["file"]).name, data) for row, data in chunk])
            results.extend({**row, "endpoint": endpoint, "answer": answer} for (row, _), answer in zip(chunk, answers))
    return results


def batches(root, rows, batch_size, batch_bytes):
    """Lists of (row, picture bytes): at most `batch_size` pictures, and over `batch_bytes` only when alone."""
    chunk, size = [], 0
    for row in rows:
        data = (root / row["file"]).read_bytes()
        if chunk and (len(chunk) == batch_size or size + len(data) > batch_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((row, data))
        size += len(data)
    if chunk:
        yield chunk


def is_right(result):
    answer, expected = result["answer"], result["expected"]
    if expected in REFUSALS:
        return answer.get("error", {}).get("code") in REFUSALS
    if "number" in answer and not expected.isdigit():  # a number with marks: its text, marks and spaces too
        return answer.get("text") == expected
    if "number" in answer:
        return answer["number"] == expected
    return str(answer.get("digit")) == expected


def said(answer):
    """What the service answered, in a few characters."""
    if "error" in answer:
        return answer["error"]["code"]
    return f"{answer.get('text', answer.get('number', answer.get('digit')))} ({answer['confidence']:.0%})"


def by_category(results):
    """{(endpoint, category): its results}, in the order answered."""
    groups = defaultdict(list)
    for result in results:
        groups[result["endpoint"], result["category"]].append(result)
    return groups


def is_refused(result):
    return result["answer"].get("error", {}).get("code") in REFUSALS


def summary_table(results, seconds):
    groups = by_category(results)
    width = max([12] + [len(category) + 1 for _, category in groups])  # real-dev kinds are longer
    lines = [f"{'endpoint':17}{'category':{width}}{'images':>8}{'right':>9}{'misses':>8}{'refused':>9}"
             f"{'mean conf':>11}{'conf when wrong':>17}"]
    for (endpoint, category), group in groups.items():
        right = sum(map(is_right, group))
        refused = sum(map(is_refused, group))
        answered = [r["answer"] for r in group if "confidence" in r["answer"]]
        wrong = [r["answer"]["confidence"] for r in group if "confidence" in r["answer"] and not is_right(r)]
        lines.append(f"{endpoint:17}{category:{width}}{len(group):>8,}{right / len(group):>9.2%}"
                     f"{len(group) - right:>8}{refused:>9}"
                     f"{sum(a['confidence'] for a in answered) / max(len(answered), 1):>11.3f}"
                     f"{(sum(wrong) / len(wrong) if wrong else float('nan')):>17.3f}")
    lines.append(f"{len(results):,} answers in {seconds:.1f} s")
    return "\n".join(lines)


def summary_json(results, pictures, url):
    """The table's shares, {endpoint: {category: {images, right, refused}}}, for tooling that compares runs; single
    digits also get the calibration error of the probabilities answered (a refusal's closest digit's included)."""
    scores = defaultdict(dict)
    for (endpoint, category), group in by_category(results).items():
        scores[endpoint][category] = {"images": len(group), "right": sum(map(is_right, group)) / len(group),
                                      "refused": sum(map(is_refused, group)) / len(group)}
        if endpoint == "/recognize.json" and all(result["expected"].isdigit() for result in group):
            bins = calibration_bins(np.array([digit_probabilities(result["answer"]) for result in group]),
                                    np.array([int(result["expected"]) for result in group]))
            scores[endpoint][category].update(ece_15_bins=error_of_bins(bins), calibration_bins=bins)
    return {"set": str(pictures), "url": url, "answers": len(results), "scores": scores}


def digit_probabilities(answer):
    """The ten digits' probabilities of an answer: its own, a refusal's closest reading's, or none (zeros)."""
    reading = answer.get("error", {}).get("closest", answer)
    return reading.get("probabilities", [0.0] * 10)


# The single digits written by people whose answers' calibration the card reports together (as the folder and
# category scripts/evaluate.py records them): MNIST's and UCI's test digits, USPS's scans.
PEOPLES_DIGITS = (("eval-set", "mnist"), ("eval-set", "uci"), ("usps-train", "one-digit-scan-16px"))


def record_in_card(card_path, name, summary, served_version):
    """Write `summary`'s scores into the card at `card_path` as card["real_handwriting"][name]; a problem, or None.
    Only the model the card describes may be recorded in it."""
    card = json.loads(card_path.read_text())
    if served_version != card["version"]:
        return (f"the service serves model {served_version}, {card_path} describes {card['version']}: "
                "serve the card's model, or record in its own card")
    card.setdefault("real_handwriting", {})[name] = {"measured_by": "scripts/evaluate.py", "answers": summary["answers"],
                                                     "scores": summary["scores"]}
    card["real_handwriting"] = dict(sorted(card["real_handwriting"].items()))
    recorded = {(folder, category): score for folder, scores in card["real_handwriting"].items()
                for category, score in scores["scores"].get("/recognize.json", {}).items()
                if "calibration_bins" in score}
    measured = [key for key in PEOPLES_DIGITS if key in recorded]
    if measured:
        scores = [recorded[key] for key in measured]
        card["calibration"]["peoples_digits"] = {
            "over": [f"{folder}: {category}" for folder, category in measured],
            "digits": sum(score["images"] for score in scores),
            "ece_15_bins": error_of_bins([list(map(sum, zip(*bins))) for bins in
                                          zip(*(score["calibration_bins"] for score in scores))])}
    model_card.write_card(card_path, card)
    return None


def describe_miss(result):
    return f"  {result['file']}: {result['expected']}, {said(result['answer'])} — {result['note']}"


def contact_sheet(root, misses, path):
    """A grid of the missed pictures, each captioned 'true -> read (confidence)'."""
    misses = misses[:MAX_SHEET]
    columns = min(10, max(1, len(misses)))
    rows = -(-len(misses) // columns)
    sheet = Image.new("RGB", (columns * CELL, max(1, rows) * (CELL + CAPTION)), "white")
    pen = ImageDraw.Draw(sheet)
    for number, result in enumerate(misses):
        left, top = (number % columns) * CELL, (number // columns) * (CELL + CAPTION)
        with Image.open(io.BytesIO((root / result["file"]).read_bytes())) as picture:
            picture.seek(0)
            thumbnail = ImageOps.exif_transpose(picture).convert("RGBA")
        scale = (CELL - 8) / max(thumbnail.size)
        size = (max(1, round(thumbnail.width * scale)), max(1, round(thumbnail.height * scale)))
        thumbnail = thumbnail.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX)
        backdrop = Image.new("RGBA", thumbnail.size, (200, 200, 200, 255))
        sheet.paste(Image.alpha_composite(backdrop, thumbnail).convert("RGB"), (left + 4, top + 4))
        pen.text((left + 4, top + CELL), f"{result['expected']} -> {said(result['answer'])}", fill="black")
    sheet.save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:5000", help="the running service (%(default)s)")
    parser.add_argument("--set", type=Path, default=DEFAULT_CACHE / "eval-set", help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="most pictures per request (%(default)s)")
    parser.add_argument("--batch-bytes", type=int, default=8_000_000,
                        help="most bytes of pictures per request, below the service's body limit (%(default)s)")
    parser.add_argument("--sheet", type=Path,
                        help="contact sheet of the misses (default: SET-misses.png in the temporary folder, never "
                             "inside SET, which may be shared material)")
    parser.add_argument("--show", type=int, default=15, help="misses printed per category")
    parser.add_argument("--only", nargs="+", metavar="CATEGORY", help="score these categories only")
    parser.add_argument("--json", type=Path, help="also write the summary here, as JSON")
    parser.add_argument("--card", type=Path, help="record the summary in this model card (model/model.json), under "
                        "real_handwriting and the set's folder name: the card must describe the model served")
    args = parser.parse_args(argv)
    labels = args.set / "labels.csv"
    if not labels.exists():
        print(f"evaluate.py: {labels} does not exist: run scripts/make_eval_set.py first", file=sys.stderr)
        return 2
    rows = [row for row in read_rows(labels) if not args.only or row["category"] in args.only]
    started = time.perf_counter()
    try:
        service = Service(args.url)
        results = score(service, args.set, rows, args.batch_size, args.batch_bytes)
    except OSError as error:
        print(f"evaluate.py: cannot reach {args.url} ({error}): start the service first", file=sys.stderr)
        return 2
    print(summary_table(results, time.perf_counter() - started))
    summary = summary_json(results, args.set, args.url)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.card:
        problem = record_in_card(args.card, args.set.resolve().name, summary, service.model_version)
        if problem:
            print(f"evaluate.py: {problem}", file=sys.stderr)
            return 2
    misses = [result for result in results if not is_right(result)]
    for endpoint, category in dict.fromkeys((result["endpoint"], result["category"]) for result in misses):
        theirs = [miss for miss in misses if (miss["endpoint"], miss["category"]) == (endpoint, category)]
        print(f"\n{endpoint} {category}: {len(theirs)} missed"
              + (f", first {args.show}:" if len(theirs) > args.show else ":"))
        print("\n".join(describe_miss(miss) for miss in theirs[: args.show]))
    sheet = args.sheet or Path(tempfile.gettempdir()) / f"{args.set.name}-misses.png"
    contact_sheet(args.set, misses, sheet)
    print(f"\ncontact sheet of {min(len(misses), MAX_SHEET)} misses: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
