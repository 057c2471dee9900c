"""Sentry error reporting, on when SENTRY_DSN is set; events carry the model version as the release."""

import sentry_sdk
from sentry_sdk.integrations.flask import FlaskIntegration


def init_sentry(app):
    dsn = app.config["SENTRY_DSN"]
    if not dsn:
        return
    sentry_sdk.init(
        dsn=dsn,
        integrations=[FlaskIntegration()],
        release=app.extensions["predictor"].version,
        environment=app.config["SENTRY_ENVIRONMENT"],
        data_collection={"user_info": False, "http_bodies": []},  # uploads are users' pictures: never sent
        shutdown_timeout=2,
    )
