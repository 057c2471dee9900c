"""Prometheus metrics at GET /metrics: requests by status, latency, answers by digit, low-confidence
answers, refusals, batch sizes and the model version.

Under gunicorn each worker is a process of its own: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR, where
every worker writes its samples, and /metrics adds them up over all workers, dead ones included, so
counts survive a worker being replaced. Without it (the Flask test client, `flask run`) the process's
own registry is served.
"""

import os
import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, multiprocess)

from app.predictor import REFUSALS

bp = Blueprint("metrics", __name__)
WARM_UP = "digit_recognition.warm_up"  # the start-up request's WSGI environ key: it is not counted
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # any other is counted as "other"
disable_created_metrics()  # as in multiprocess mode: one series per counter, the same in every setup

REQUESTS = Counter("digit_recognition_requests", "HTTP requests answered", ["method", "endpoint", "status"])
LATENCY = Histogram("digit_recognition_request_duration_seconds", "Time to answer a request", ["endpoint"],
                    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
ANSWERS = Counter("digit_recognition_predictions", "Digits read, by the digit answered", ["digit"])
LOW_CONFIDENCE = Counter("digit_recognition_low_confidence_predictions",
                         "Digits read with a confidence under LOW_CONFIDENCE (default 0.5)")
REFUSED = Counter("digit_recognition_refusals", "Pictures refused as not one digit, by the error code", ["code"])
BATCH_IMAGES = Histogram("digit_recognition_batch_images", "Images per recognition request",
                         buckets=(1, 2, 4, 8, 16, 32, 64))
MODEL = Gauge("digit_recognition_model_info", "The model being served (value 1)", ["version"],
              multiprocess_mode="max")


def register_metrics(app):
    MODEL.labels(app.extensions["predictor"].version).set(1)

    @app.after_request
    def count(response):
        if request.environ.get(WARM_UP):
            return response
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"  # bounded labels: no raw paths
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        # g.started: the clock app/request_log.py starts for its log line
        LATENCY.labels(endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response


def observe_answers(answers):
    """Count one recognition or reading request's answers (errors in a batch included in its size)."""
    if request.environ.get(WARM_UP):
        return
    BATCH_IMAGES.observe(len(answers))
    threshold = current_app.config["LOW_CONFIDENCE"]
    for answer in answers:
        if "error" in answer:
            if answer["error"]["code"] in REFUSALS.values():
                REFUSED.labels(answer["error"]["code"]).inc()
            continue
        for digit in answer.get("digits", [answer]):  # a number's digits, or the one digit
            ANSWERS.labels(str(digit["digit"])).inc()
            if digit["confidence"] < threshold:
                LOW_CONFIDENCE.inc()


@bp.get("/metrics")
def metrics():
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
