"""API tokens (good, bad, revoked, expired), CSRF for cookies only, throttling, the schema and the docs page."""

from __future__ import annotations

import io
import json
import random
import re
from datetime import timedelta

import pytest
import yaml
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone

from annotator.models import ApiToken, Role
from annotator.services.tokens import issue_token
from tests.annotator.test_permissions import iter_url_patterns

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response) -> dict:
    body = response.json()
    assert set(body) >= {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


@pytest.fixture
def alice(make_user, make_project):
    user = make_user("alice")
    make_project("Street", slug="street", members={user: Role.ANNOTATOR})
    return user


def test_a_token_authenticates_its_person_and_only_its_hash_is_stored(alice):
    row, token = issue_token(alice, "pipeline")
    assert token.startswith(f"mkt_{row.prefix}_") and token not in row.digest
    secret = token.removeprefix(f"mkt_{row.prefix}_")  # url-safe base64: may itself hold "_"
    assert ApiToken.objects.filter(digest__contains=secret).count() == 0
    response = Client().get(reverse("api-project-list"), headers=bearer(token))
    assert response.status_code == 200 and [p["slug"] for p in response.json()["projects"]] == ["street"]
    row.refresh_from_db()
    assert row.last_used_at is not None


@pytest.mark.parametrize("case", ["missing", "garbage", "wrong-secret", "revoked", "expired", "deactivated",
                                  "two-words", "not-ascii"])
def test_bad_tokens_get_a_401_in_json(alice, case):
    row, token = issue_token(alice, "pipeline")
    header = f"Bearer {token}"
    if case == "missing":
        header = ""
    elif case == "garbage":
        header = "Bearer nonsense"
    elif case == "wrong-secret":
        header = f"Bearer {token[:-4]}AAAA"
    elif case == "revoked":
        row.revoked_at = timezone.now()
        row.save()
    elif case == "expired":
        row.expires_at = timezone.now() - timedelta(seconds=1)
        row.save()
    elif case == "deactivated":
        alice.is_active = False
        alice.save()
    elif case == "two-words":
        header = f"Bearer {token} extra"
    elif case == "not-ascii":
        header = "Bearer mkt_ab\u00e9"
    headers = {"Authorization": header} if header else {}
    for url in (reverse("api-project-list"), reverse("api-project-detail", args=["street"])):
        response = Client().get(url, headers=headers)
        assert response.status_code == 401, (case, response.content)
        assert response["WWW-Authenticate"].startswith("Bearer")
        error = error_of(response)
        words = {"revoked": "revoked", "expired": "expired", "deactivated": "deactivated",
                 "missing": "Authentication required", "two-words": "Authorization: Bearer"}.get(case, "not valid")
        assert words in error["message"], (case, error)
    # A bad token is refused even where nobody needs to sign in: a script never silently runs as nobody.
    if header:
        assert Client().get(reverse("api-session"), headers=headers).status_code == 401


def test_tokens_through_the_api_create_list_and_revoke(alice):
    first, token = issue_token(alice, "first")
    created = Client().post(reverse("api-tokens"), {"name": "ci", "expires_days": 30}, content_type="application/json",
                            headers=bearer(token))
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "ci" and body["active"] and body["token"].startswith(body["prefix"] + "_")
    assert timedelta(days=29) < timezone.datetime.fromisoformat(body["expires_at"]) - timezone.now() <= timedelta(30)
    listed = Client().get(reverse("api-tokens"), headers=bearer(body["token"])).json()
    assert listed["count"] == 2 and {t["name"] for t in listed["results"]} == {"first", "ci"}
    assert all("token" not in t for t in listed["results"])  # shown once, when made

    revoked = Client().delete(reverse("api-token-detail", args=[first.id]), headers=bearer(body["token"]))
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert Client().get(reverse("api-tokens"), headers=bearer(token)).status_code == 401
    # Someone else's token is not yours to revoke.
    bob, _ = issue_token(type(alice).objects.create_user("bob"), "bob's")
    assert Client().delete(reverse("api-token-detail", args=[bob.id]), headers=bearer(body["token"])).status_code == 404

    for bad, field in (({}, "name"), ({"name": "x", "expires_days": 0}, "expires_days"),
                       ({"name": "x" * 101}, "name"), ({"name": "a\u0000"}, "name")):
        refused = Client().post(reverse("api-tokens"), bad, content_type="application/json",
                                headers=bearer(body["token"]))
        assert refused.status_code == 400 and error_of(refused)["field"] == field, (bad, refused.content)


def test_the_account_page_makes_shows_once_and_revokes_tokens(alice):
    browser = Client()
    browser.force_login(alice)
    page = browser.get(reverse("account"))
    assert page.status_code == 200 and b"No tokens yet" in page.content
    assert reverse("account").encode() in browser.get(reverse("project-list")).content  # the nav links it
    made = browser.post(reverse("account"), {"action": "create", "name": "laptop", "expires_days": "30"})
    secret = re.search(rb'id="token-secret" readonly value="([^"]+)"', made.content).group(1).decode()
    assert Client().get(reverse("api-project-list"), headers=bearer(secret)).status_code == 200
    again = browser.get(reverse("account")).content
    assert secret.encode() not in again and b"laptop" in again  # shown once
    row = ApiToken.objects.get(user=alice)
    bad = browser.post(reverse("account"), {"action": "create", "name": "x", "expires_days": "soon"})
    assert b"number of days" in bad.content and ApiToken.objects.count() == 1
    revoked = browser.post(reverse("account"), {"action": "revoke", "token_id": row.id}, follow=True)
    assert b"revoked" in revoked.content
    assert Client().get(reverse("api-project-list"), headers=bearer(secret)).status_code == 401


def test_manage_py_api_token_prints_the_token_as_the_last_word(alice):
    out = io.StringIO()
    call_command("api_token", "alice", "--name", "nightly", "--expires-days", "7", stdout=out)
    token = out.getvalue().split()[-1]
    assert Client().get(reverse("api-project-list"), headers=bearer(token)).status_code == 200
    assert ApiToken.objects.get(user=alice).name == "nightly"
    with pytest.raises(Exception, match="No active account"):
        call_command("api_token", "nobody", stdout=io.StringIO())


def test_csrf_applies_to_the_cookie_only(alice, tmp_path):
    _, token = issue_token(alice, "pipeline")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    url = reverse("api-video-masklets", args=["street", 1])
    refused = browser.post(url, {"label": ""}, content_type="application/json")
    assert refused.status_code == 403 and error_of(refused)["code"] == "csrf"
    assert error_of(refused)["message"].startswith("CSRF check failed")
    script = Client(enforce_csrf_checks=True)
    passed = script.post(url, {"label": ""}, content_type="application/json", headers=bearer(token))
    assert passed.status_code == 404  # past authentication and CSRF: there is no video 1


def test_requests_over_the_rate_get_a_429_with_retry_after(alice, make_user, settings):
    busy, token = issue_token(alice, "busy")
    quiet, other = issue_token(make_user("bob"), "quiet")
    # The services pass's cache is a Redis that outlives the test database (ids come again): start clean.
    cache.delete_many([f"throttle_token_{busy.pk}", f"throttle_token_{quiet.pk}"])
    addresses = [f"10.{random.randrange(256)}.{random.randrange(256)}.{n}" for n in (7, 8)]
    settings.API_RATES = {"token": "3/min", "ip": None}
    url = reverse("api-project-list")
    statuses = [Client().get(url, headers=bearer(token)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = Client().get(url, headers=bearer(token))
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 60
    assert error_of(limited)["code"] == "throttled"
    assert Client().get(url, headers=bearer(other)).status_code == 200  # per token

    settings.API_RATES = {"token": None, "ip": "2/min"}
    anonymous = [Client(REMOTE_ADDR=addresses[0]).get(reverse("api-session")).status_code for _ in range(3)]
    assert anonymous == [200, 200, 429]
    assert Client(REMOTE_ADDR=addresses[1]).get(reverse("api-session")).status_code == 200  # per address


def test_unknown_api_paths_are_json_404s():
    response = Client().get("/api/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert Client().post("/api/no/such/thing/", {}).status_code == 404


def _api_routes() -> set[str]:
    """Every /api/ route of the URLconf, in OpenAPI's spelling (``{slug}``)."""
    routes = set()
    for route, _, _ in iter_url_patterns(get_resolver().url_patterns):
        if route.startswith("api/") and route not in ("api/schema/", "api/docs/"):
            routes.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return routes


def test_the_schema_describes_every_api_endpoint():
    as_yaml = Client().get(reverse("api-schema"))
    assert as_yaml.status_code == 200 and as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    schema = yaml.safe_load(as_yaml.content)
    assert schema["openapi"].startswith("3.")
    as_json = Client().get(reverse("api-schema") + "?format=json")
    assert as_json.status_code == 200 and json.loads(as_json.content)["paths"] == schema["paths"]
    missing = _api_routes() - set(schema["paths"])
    assert not missing, f"endpoints missing from the OpenAPI schema: {sorted(missing)}"
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearerAuth"][
            "description"]}
    operation_ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_the_docs_page_is_served_from_local_files():
    page = Client().get(reverse("api-docs"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui-bundle.js" in html and "<style" not in html and "<script>" not in html
    assert "//cdn" not in html and "https://" not in html
    script = Client().get(reverse("api-docs") + "?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    assert reverse("api-schema") in script.content.decode()
