"""Score the running service over HTTP on the evaluation set, endpoint by endpoint, category by category.

    python scripts/make_eval_set.py                     # once: build the set
    python scripts/evaluate.py --url http://localhost:5000

Sends the pictures as users do (multipart uploads, up to 64 per request) to the endpoint that reads
their category (make_eval_set.ENDPOINTS: digits to /recognize.json, numbers to /read.json, pictures to
refuse to both), then prints a table per endpoint and category, the misses, and writes a contact sheet of
the misses (the picture sent, what it is, what the service answered and how sure it was). A picture to
refuse counts as right when it is refused (not_a_digit or several_digits); a number when every digit is
read, in order.
"""

import argparse
import csv
import http.client
import io
import json
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import scripts

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

    def send(self, endpoint, pictures):
        """One answer ({"digit", ...}, {"number", ...} or {"error": ...}) per picture, in order."""
        boundary = uuid.uuid4().hex
        self.connection.request("POST", self.prefix + endpoint, multipart_body(pictures, boundary),
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = self.connection.getresponse()
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


def score(service, root, rows, batch_size, batch_bytes):
    """Each row of labels.csv with the endpoint and its answer added, once for each endpoint that reads it."""
    results = []
    for endpoint, categories in ENDPOINTS.items():
        theirs = [row for row in rows if row["category"] in categories]
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
    if "number" in answer:
        return answer["number"] == expected
    return str(answer.get("digit")) == expected


def said(answer):
    """What the service answered, in a few characters."""
    if "error" in answer:
        return answer["error"]["code"]
    return f"{answer.get('number', answer.get('digit'))} ({answer['confidence']:.0%})"


def summary_table(results, seconds):
    by_category = defaultdict(list)
    for result in results:
        by_category[result["endpoint"], result["category"]].append(result)
    lines = [f"{'endpoint':17}{'category':12}{'images':>8}{'right':>9}{'misses':>8}{'refused':>9}{'mean conf':>11}"
             f"{'conf when wrong':>17}"]
    for (endpoint, category), group in by_category.items():
        right = sum(map(is_right, group))
        refused = sum(r["answer"].get("error", {}).get("code") in REFUSALS for r in group)
        answered = [r["answer"] for r in group if "confidence" in r["answer"]]
        wrong = [r["answer"]["confidence"] for r in group if "confidence" in r["answer"] and not is_right(r)]
        lines.append(f"{endpoint:17}{category:12}{len(group):>8,}{right / len(group):>9.2%}{len(group) - right:>8}"
                     f"{refused:>9}{sum(a['confidence'] for a in answered) / max(len(answered), 1):>11.3f}"
                     f"{(sum(wrong) / len(wrong) if wrong else float('nan')):>17.3f}")
    lines.append(f"{len(results):,} answers in {seconds:.1f} s")
    return "\n".join(lines)


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
    parser.add_argument("--sheet", type=Path, help="contact sheet of the misses (default: SET/misses.png)")
    parser.add_argument("--show", type=int, default=15, help="misses printed per category")
    parser.add_argument("--only", nargs="+", metavar="CATEGORY", help="score these categories only")
    args = parser.parse_args(argv)
    labels = args.set / "labels.csv"
    if not labels.exists():
        print(f"evaluate.py: {labels} does not exist: run scripts/make_eval_set.py first", file=sys.stderr)
        return 2
    with open(labels, newline="") as file:
        rows = [row for row in csv.DictReader(file) if not args.only or row["category"] in args.only]
    started = time.perf_counter()
    try:
        results = score(Service(args.url), args.set, rows, args.batch_size, args.batch_bytes)
    except OSError as error:
        print(f"evaluate.py: cannot reach {args.url} ({error}): start the service first", file=sys.stderr)
        return 2
    print(summary_table(results, time.perf_counter() - started))
    misses = [result for result in results if not is_right(result)]
    for endpoint, category in dict.fromkeys((result["endpoint"], result["category"]) for result in misses):
        theirs = [miss for miss in misses if (miss["endpoint"], miss["category"]) == (endpoint, category)]
        print(f"\n{endpoint} {category}: {len(theirs)} missed"
              + (f", first {args.show}:" if len(theirs) > args.show else ":"))
        print("\n".join(describe_miss(miss) for miss in theirs[: args.show]))
    sheet = args.sheet or args.set / "misses.png"
    contact_sheet(args.set, misses, sheet)
    print(f"\ncontact sheet of {min(len(misses), MAX_SHEET)} misses: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
