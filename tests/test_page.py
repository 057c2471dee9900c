"""GET /: the page a person opens, its static files and the security headers, through the Flask client."""

import io
import re

import pytest

from tests.conftest import ROOT
from tests.images import encode, mnist_style


def test_a_browser_gets_the_page_with_the_model_card_figures(client, app):
    response = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    card = app.extensions["predictor"].card
    assert f"{card['refusal']['test']['digits_read_right'] * 100:.2f}%" in page and card["version"] in page
    assert 'role="status"' in page and '<canvas id="pad"' in page and 'type="file"' in page
    assert response.headers["Cache-Control"] == "no-cache"


def test_curl_without_an_accept_header_gets_the_page_and_json_clients_the_index(client):
    assert client.get("/", headers={"Accept": "*/*"}).mimetype == "text/html"
    assert client.get("/", headers={"Accept": "application/json"}).get_json()["recognize"] == "/recognize.json"


def test_the_page_has_no_inline_script_or_style_and_everything_it_loads_is_served(client):
    page = client.get("/").get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script: the CSP forbids it"
    assert "<style" not in page and " style=" not in page and " on" + "click=" not in page
    links = re.findall(r'(?:src|href)="(/[^"]*)"', page)
    assert {"/static/app.js", "/static/style.css", "/confusion.png"} <= {link.split("?")[0] for link in links}
    for link in links:
        assert client.get(link).status_code == 200, link


SECURITY_HEADERS = {  # written out, not imported from app.page: a change to what clients get shows here
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/recognize.json"), ("GET", "/static/app.js"),
                                          ("GET", "/healthz"), ("GET", "/no-such-page"), ("POST", "/recognize.json"),
                                          ("POST", "/read.json")])
def test_every_response_carries_the_security_headers(client, method, path):
    response = client.open(path, method=method, data=encode(mnist_style(3)), content_type="image/png")
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


def test_static_files_are_cached_and_versioned_by_their_content(client):
    page = client.get("/").get_data(as_text=True)
    script = re.search(r'src="(/static/app\.js\?v=[0-9a-f]{12})"', page)[1]
    response = client.get(script)
    assert response.mimetype == "text/javascript"
    assert "max-age=86400" in response.headers["Cache-Control"]
    assert response.get_data() == (ROOT / "app" / "static" / "app.js").read_bytes()


def test_the_confusion_picture_is_the_model_cards(client):
    response = client.get("/confusion.png")
    assert response.mimetype == "image/png"
    assert response.get_data() == (ROOT / "model" / "confusion.png").read_bytes()


def test_cors_is_off_by_default(client):
    response = client.post("/recognize.json", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_the_listed_origins_and_answers_their_preflight():
    from app import create_app

    client = create_app({"TESTING": True, "CORS_ORIGINS": "https://a.example, https://b.example/"}).test_client()
    preflight = client.options("/recognize.json", headers={
        "Origin": "https://b.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.post("/recognize.json", data={"image": (io.BytesIO(encode(mnist_style(2))), "2.png")},
                         headers={"Origin": "https://a.example"})
    assert answer.get_json()["digit"] == 2
    assert answer.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert "X-Model-Version" in answer.headers["Access-Control-Expose-Headers"]
    assert "Origin" in answer.headers["Vary"]
    refused = client.post("/recognize.json", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
