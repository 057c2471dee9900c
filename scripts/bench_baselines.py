"""The two servers scripts/bench.py measures the service against, as gunicorn app factories.

    seeds_way    what the seed projects did: Keras on TensorFlow, `model.predict` on every request
    hello_world  Flask's floor: read the upload, answer a fixed JSON, no model at all
"""

import io
import os
from pathlib import Path

from flask import Flask, jsonify, request

MODEL = Path(__file__).resolve().parents[1] / "model" / "model.h5"


def seeds_way():
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import numpy as np
    from PIL import Image

    model = keras.models.load_model(MODEL, compile=False)
    app = Flask(__name__)

    @app.post("/recognize.json")
    def recognize():
        image = Image.open(io.BytesIO(request.files["image"].read())).convert("L").resize((28, 28))
        probabilities = model.predict(np.asarray(image, dtype=np.float32).reshape(1, 28, 28, 1) / 255, verbose=0)[0]
        return jsonify(digit=int(probabilities.argmax()), confidence=float(probabilities.max()),
                       probabilities=probabilities.tolist())

    app.add_url_rule("/healthz", "health", lambda: jsonify(status="ok"))
    return app


def hello_world():
    app = Flask(__name__)

    @app.post("/recognize.json")
    def recognize():
        request.files["image"].read()
        return jsonify(digit=7, confidence=1.0, probabilities=[0.0] * 7 + [1.0] + [0.0] * 2)

    app.add_url_rule("/healthz", "health", lambda: jsonify(status="ok"))
    return app
