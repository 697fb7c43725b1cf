"""The API's docs page in Chromium: Swagger UI from the server's own static files, under the site's CSP, with
nothing fetched from anywhere but the server; and a token made on the account page that works on the API."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-api-docs-password"


def test_the_docs_page_renders_offline_under_the_csp(page, masklet_server):
    server_host = urlsplit(masklet_server.url).netloc
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock-tag")  # Swagger UI drew the schema's operations
    page.wait_for_selector("text=/api/projects/{slug}/masklets/{masklet_id}/masks/")
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("Masklet API")
    assert page.locator("button.authorize").count() == 1  # the bearer token scheme
    outside = [url for url in requested if urlsplit(url).scheme in ("http", "https", "ws", "wss")
               and urlsplit(url).netloc != server_host]
    assert not outside, f"the docs page reached outside the server: {outside}"
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in url for url in requested)
    assert any(url.endswith("/api/schema/") or "/api/schema/?" in url for url in requested)
    # csp_violations (the page fixture) fails the test on any Content-Security-Policy report.


def test_a_token_made_on_the_account_page_works_on_the_api(browser, sign_in, masklet_server):
    masklet_server.shell("from django.contrib.auth import get_user_model\n"
                         f"get_user_model().objects.create_user('tokenista', password={PASSWORD!r})")
    context, page = sign_in(masklet_server, "tokenista", PASSWORD)
    try:
        page.click("a.who")  # the nav's link to the account page
        page.fill("#create-token input[name=name]", "laptop")
        page.click("#create-token button[type=submit]")
        token = page.input_value("#token-secret")
        assert token.startswith("mkt_")
        api = browser.new_context(base_url=masklet_server.url)
        try:
            ok = api.request.get("/api/projects/", headers={"Authorization": f"Bearer {token}"})
            assert ok.status == 200 and ok.json() == {"projects": []}
            page.click("#token-table button[value=revoke]")
            page.wait_for_selector("#token-table [data-role=state] >> text=revoked")
            refused = api.request.get("/api/projects/", headers={"Authorization": f"Bearer {token}"})
            assert refused.status == 401 and refused.json()["error"]["message"] == "The API token was revoked."
        finally:
            api.close()
    finally:
        context.close()
