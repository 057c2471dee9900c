"""Where a request's time goes, in one process: the stages of /recognize.json and /read.json timed apart.

    python scripts/time_stages.py                 # about a minute
    python scripts/time_stages.py --repeat 500

No HTTP and no second process: the multipart bodies scripts/bench.py sends, posted through Flask's test
client to the committed model and to Flask's floor (the hello-world of scripts/bench_baselines.py).
Every row is timed in turns with the others, `--repeat` times each, and the median is printed: one digit
(MNIST's first test digit, a 28x28 PNG) and the 4-digit number of scripts/bench.py, whole requests and
their stages (decode, ink map, framing, segmentation, the model call at each batch size). The figures of
docs/performance.md's "where the time goes" come from here.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import app and scripts

from app import create_app  # noqa: E402
from app.predictor import BATCH_SIZES, _forward  # noqa: E402
from app.preprocessing import decode_upright, frame_digit, ink_map  # noqa: E402
from app.segmentation import crowded_groups, segment  # noqa: E402
from scripts.bench import BOUNDARY, number_picture  # noqa: E402
from scripts.bench_baselines import hello_world  # noqa: E402
from scripts.evaluate import multipart_body  # noqa: E402
from scripts.make_eval_set import to_bytes  # noqa: E402
from scripts.mnist_data import load_mnist  # noqa: E402


def stages(app, floor, one, number):
    """name -> a call to time, in the order they are printed."""
    service, baseline = app.test_client(), floor.test_client()
    predictor = app.extensions["predictor"]
    max_pixels, max_digits = app.config["MAX_IMAGE_PIXELS"], app.config["MAX_DIGITS"]
    image, _ = decode_upright(one, max_pixels)
    ink = ink_map(image)
    number_ink = ink_map(decode_upright(number, max_pixels)[0])
    segmentation = segment(number_ink, max_digits)
    candidates = np.stack([candidate.digit for candidate in segmentation.candidates])
    read = predictor.predict(candidates)
    model = predictor.model

    def post(client, path, picture):
        body, kind = multipart_body([("digit.png", picture)], BOUNDARY), f"multipart/form-data; boundary={BOUNDARY}"
        return lambda: client.post(path, data=body, content_type=kind)

    rows = {
        "floor: the whole request": post(baseline, "/recognize.json", one),
        "/recognize.json: the whole request": post(service, "/recognize.json", one),
        "  decode the PNG": lambda: decode_upright(one, max_pixels),
        "  the ink map": lambda: ink_map(image),
        "  frame the digit": lambda: frame_digit(ink),
        "  the model call, 1 digit (predictor.predict)": lambda: predictor.predict(candidates[:1]),
        "/read.json, 4 digits: the whole request": post(service, "/read.json", number),
        "  decode and the ink map": lambda: ink_map(decode_upright(number, max_pixels)[0]),
        "  segment (pieces, cuts, framing each candidate)": lambda: segment(number_ink, max_digits),
        f"  the model call, its {len(candidates)} candidates": lambda: predictor.predict(candidates),
        "  read again: whether to (crowded groups)": lambda: crowded_groups(segmentation, read),
    }
    for size in BATCH_SIZES:
        zeros = np.zeros((size, 28, 28, 1), dtype=np.float32)
        rows[f"model alone, a batch of {size}"] = lambda zeros=zeros: _forward(model)(zeros).block_until_ready()
    return rows


def timed(rows, repeat):
    """name -> median seconds, each row's calls interleaved with the others'."""
    samples = {name: [] for name in rows}
    for _ in range(repeat):
        for name, call in rows.items():
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=300, help="times each row is run (%(default)s)")
    args = parser.parse_args(argv)
    digits = load_mnist().x_test
    app = create_app({"TESTING": True, "LOG_LEVEL": "WARNING"})
    one, number = (to_bytes(Image.fromarray(pixels), "PNG") for pixels in (digits[0], number_picture(digits[:4])))
    rows = stages(app, hello_world(), one, number)
    timed(rows, 20)  # warm every path first
    medians = timed(rows, args.repeat)
    width = max(map(len, medians))
    for name, seconds in medians.items():
        print(f"{name:{width}}  {seconds * 1000:7.3f} ms")
    print(f"medians of {args.repeat} interleaved runs each, in one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
