"""Bad input gets a 4xx that says what was wrong, in JSON under /api/ (engine.input), never a 500."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse, HttpResponseServerError
from django.test import Client, RequestFactory
from django.urls import reverse

from annotator.models import Membership, Role
from engine.input import InputMiddleware

SESSION = "/api/session/"


def _post_json(client: Client, url: str, body: str | bytes):
    return client.post(url, body, content_type="application/json")


def _assert_refused(response, status: int, code: str, field: str | None = None, words: str = "") -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    error = body["error"]
    assert error["code"] == code and error["field"] == field, body
    assert isinstance(error["message"], str) and words in error["message"], body
    return error


@pytest.mark.django_db
def test_deep_json_is_refused_without_login_not_a_500():
    client = Client()
    deep = "[" * 5000 + "]" * 5000
    _assert_refused(_post_json(client, SESSION, deep), 400, "too_deep", words="32 levels")
    inner: list = [1]
    for _ in range(31):  # the object is level 1, "x" level 2, ... the 32nd list inside it level 33
        inner = [inner]
    nested = json.dumps({"username": "a", "password": "b", "x": inner})
    _assert_refused(_post_json(client, SESSION, nested), 400, "too_deep", field="x" + "[0]" * 31)
    fits = json.dumps({"username": "a", "password": "b", "x": inner[0]})
    assert _post_json(client, SESSION, fits).status_code == 401  # 32 levels: read, then the login fails


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field", "words"), [
    ('{"username": "a\\u0000b", "password": "x"}', "username", "NUL"),
    ('{"username": "a", "password": "\\ud800"}', "password", "lone surrogate (\\ud800)"),
    ('{"\\udfff": 1}', "\udfff", "lone surrogate"),
    ('{"username": "a", "password": "b", "extra": {"note": ["ok", "\\u0000"]}}', "extra.note[1]", "NUL"),
])
def test_nul_and_lone_surrogates_are_field_errors(body, field, words):
    _assert_refused(_post_json(Client(), SESSION, body), 400, "bad_text", field=field, words=words)


@pytest.mark.django_db
def test_other_bad_bodies(settings):
    client = Client()
    _assert_refused(_post_json(client, SESSION, b'{"username": "\xff"}'), 400, "bad_json", words="not UTF-8")
    _assert_refused(_post_json(client, SESSION, "{nope"), 400, "bad_json", words="line 1, column 2")
    _assert_refused(_post_json(client, SESSION, "[1, 2]"), 400, "bad_json", words="JSON object")
    _assert_refused(_post_json(client, SESSION, '{"username": 1, "password": "x"}'), 400, "invalid",
                    field="username")
    settings.MAX_JSON_BYTES = 100
    _assert_refused(_post_json(client, SESSION, json.dumps({"username": "a" * 200, "password": "x"})), 413,
                    "too_large", words="limited to 100")


@pytest.mark.django_db
def test_a_nul_in_a_team_form_is_refused_naming_the_field(client, make_user, make_project):
    boss = make_user("boss")
    project = make_project(members={boss: Role.ADMIN})
    client.force_login(boss)
    response = client.post(reverse("team", args=[project.slug]),
                           {"action": "add", "user": "ann\x00", "role": "annotator"})
    assert response.status_code == 400
    assert "“user” contains a NUL character" in response.content.decode()
    assert Membership.objects.filter(project=project).count() == 1
    query = client.get(reverse("team", args=[project.slug]) + "?q=%ED%A0%80")  # a surrogate's UTF-8 bytes
    assert query.status_code == 200  # form data is decoded with replacement: a lone surrogate cannot arrive
    # The API answers the same refusal in JSON.
    api = client.get(reverse("api-video-list", args=[project.slug]), {"name": "x\x00"})
    _assert_refused(api, 400, "bad_text", field="name", words="NUL")


@pytest.mark.django_db
def test_every_error_under_api_is_json(client, make_user, make_project):
    boss = make_user("boss")
    project = make_project(members={boss: Role.ADMIN})
    client.force_login(boss)
    _assert_refused(client.get("/api/no/such/thing/"), 404, "not_found", words="nothing at this address")
    wrong = client.get(reverse("api-models-start", args=[project.slug]))
    _assert_refused(wrong, 405, "method_not_allowed", words="GET is not allowed here; use POST")
    assert wrong["Allow"] == "POST, OPTIONS"
    # Pages keep Django's pages.
    assert client.get("/no/such/page/")["Content-Type"].startswith("text/html")


def test_a_server_error_under_api_is_json_and_pages_keep_html():
    def crash(request) -> HttpResponse:
        return HttpResponseServerError("<h1>Server Error (500)</h1>")

    middleware = InputMiddleware(crash)
    api = middleware(RequestFactory().get("/api/projects/"))
    assert api.status_code == 500 and json.loads(api.content) == {"error": {
        "code": "server_error", "message": "The server failed to handle this request (the error is in its log).",
        "field": None}}
    page = middleware(RequestFactory().get("/projects/"))
    assert page.status_code == 500 and page.content == b"<h1>Server Error (500)</h1>"
