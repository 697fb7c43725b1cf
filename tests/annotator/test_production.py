"""Production settings at work: login throttling, the TLS proxy, the Content-Security-Policy, socket origins."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from annotator.models import AutoMaskletRun, Role, Video
from engine.security import socket_origin_allowed

SESSION = "/api/session/"


@pytest.fixture
def throttled(settings):
    settings.AXES_FAILURE_LIMIT = 3


def _sign_in(client: Client, username: str, password: str, ip: str = "10.0.0.1", **headers):
    return client.post(SESSION, {"username": username, "password": password}, content_type="application/json",
                       REMOTE_ADDR=ip, **headers)


def test_failed_sign_ins_lock_the_account(throttled, make_user, password):
    make_user("alice"), make_user("bob")
    client = Client()
    assert [_sign_in(client, "alice", "wrong").status_code for _ in range(3)] == [401, 401, 429]  # the 3rd locks
    locked = _sign_in(client, "alice", password, ip="10.0.0.2")  # the right password, from elsewhere
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "too_many_attempts", locked.content
    assert "blocked for 15 minutes" in locked.json()["error"]["message"] and locked["Retry-After"] == "900"
    assert _sign_in(Client(), "bob", password, ip="10.0.0.3").json()["authenticated"] is True  # others unaffected


def test_failed_sign_ins_lock_the_address(throttled, make_user, password):
    make_user("carol")
    client = Client()
    tries = [_sign_in(client, name, "guess", ip="10.9.9.9").status_code for name in ("x1", "x2", "x3")]
    assert tries == [401, 401, 429]  # a different account each time: only the address connects them
    assert _sign_in(client, "carol", password, ip="10.9.9.9").status_code == 429
    assert _sign_in(Client(), "carol", password, ip="10.9.9.10").status_code == 200


def test_a_success_resets_the_count(throttled, make_user, password):
    make_user("dave")
    client = Client()
    for _ in range(2):
        _sign_in(client, "dave", "wrong")
    assert _sign_in(client, "dave", password).status_code == 200
    for _ in range(2):
        assert _sign_in(Client(), "dave", "wrong").status_code == 401


def test_the_login_page_says_why(throttled, make_user, password):
    make_user("erin")
    client = Client()
    tries = [client.post(reverse("login"), {"username": "erin", "password": "no"}).status_code for _ in range(3)]
    assert tries == [200, 200, 429]  # the form's "wrong password" twice, then the lockout
    page = client.post(reverse("login"), {"username": "erin", "password": password})
    assert page.status_code == 429
    assert re.search(r'id="lockout">Too many failed sign-ins', page.content.decode())


def test_behind_the_proxy_the_forwarded_client_is_counted(throttled, settings, make_user, password):
    settings.BEHIND_PROXY = True
    make_user("fay")
    client = Client()
    for n in range(3):  # the same proxy, three failures of one client (who also invents a first hop)
        _sign_in(client, f"n{n}", "no", ip="172.18.0.2", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.7")
    assert _sign_in(client, "fay", password, ip="172.18.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert _sign_in(client, "fay", password, ip="172.18.0.2", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


@pytest.mark.django_db
def test_a_post_through_a_tls_proxy_passes_csrf(settings):
    settings.ALLOWED_HOSTS = ["masklet.example.org"]
    https = {"HTTP_HOST": "masklet.example.org", "HTTP_X_FORWARDED_PROTO": "https",
             "HTTP_ORIGIN": "https://masklet.example.org"}

    def post() -> int:
        client = Client(enforce_csrf_checks=True)
        token = client.get(SESSION, HTTP_HOST="masklet.example.org").json()["csrf_token"]
        return client.post(SESSION, {"username": "nobody", "password": "x"}, content_type="application/json",
                           HTTP_X_CSRFTOKEN=token, **https).status_code

    assert post() == 403  # the proxy's X-Forwarded-Proto not trusted: an https Origin on an http request
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # MASKLET_BEHIND_PROXY=1
    assert post() == 401  # past CSRF: the sign-in itself fails
    https["HTTP_ORIGIN"] = "https://evil.example.org"
    assert post() == 403
    settings.CSRF_TRUSTED_ORIGINS = ["https://evil.example.org"]  # MASKLET_TRUSTED_ORIGINS
    assert post() == 401


def test_pages_carry_the_content_security_policy_and_the_inline_script_its_nonce(client, make_user, make_project):
    boss = make_user("boss")
    project = make_project(members={boss: Role.ADMIN})
    video = Video.objects.create(project=project, name="v", original="videos/v.mp4")
    AutoMaskletRun.objects.create(video=video, frame_index=0, status="running")
    client.force_login(boss)
    page = client.get(reverse("team", args=[project.slug]))
    policy = page["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    nonce = re.search(r"script-src 'self' 'nonce-([^']+)'", policy).group(1)
    scripts = re.findall(r"<script([^>]*)>", page.content.decode())
    inline = [attributes for attributes in scripts if " src=" not in attributes]  # files come from 'self'
    assert inline == [f' nonce="{nonce}"'], scripts


ORIGIN_CASES = [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", "ws", False),  # another port
    ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),  # another scheme
    ("http://evil.example", "127.0.0.1:8000", "ws", False),
    ("https://masklet.example.org", "masklet.example.org", "wss", True),
    ("https://masklet.example.org:443", "masklet.example.org", "wss", True),  # the default port spelled out
    ("http://masklet.example.org", "masklet.example.org", "wss", False),
    ("https://masklet.example.org", "masklet.example.org", "ws", False),  # TLS ended at a proxy not trusted
    ("http://other.example", "other.example", "ws", False),  # Host not in ALLOWED_HOSTS
    ("null", "127.0.0.1:8000", "ws", False),
]


@pytest.mark.parametrize(("origin", "host", "scheme", "allowed"), ORIGIN_CASES)
def test_socket_origins_match_scheme_host_and_port(settings, origin, host, scheme, allowed):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "masklet.example.org"]
    assert socket_origin_allowed({b"origin": origin.encode(), b"host": host.encode()}, scheme) is allowed


def test_socket_origins_behind_a_proxy_and_trusted_origins(settings):
    settings.ALLOWED_HOSTS = ["masklet.example.org"]
    headers = {b"origin": b"https://masklet.example.org", b"host": b"masklet.example.org",
               b"x-forwarded-proto": b"https"}
    assert not socket_origin_allowed(headers, "ws")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert socket_origin_allowed(headers, "ws")
    assert not socket_origin_allowed({b"host": b"masklet.example.org"}, "ws")  # no Origin at all
    tool = {b"origin": b"https://tools.example.org:8443", b"host": b"masklet.example.org"}
    assert not socket_origin_allowed(tool, "ws")
    settings.CSRF_TRUSTED_ORIGINS = ["https://tools.example.org:8443"]
    assert socket_origin_allowed(tool, "ws")


@pytest.mark.skipif(not django_settings.EMBEDDED, reason="in-process socket tests run in embedded mode (as the other "
                    "consumer tests): the Redis layer's pooled connections hang when async_to_sync closes its loop")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("origin", "accepted"), [(b"http://127.0.0.1:8000", True), (b"http://127.0.0.1:9999", False),
                                                  (b"https://127.0.0.1:8000", False)])
def test_a_socket_from_another_origin_is_refused(origin, accepted, make_user, make_project):
    from config.routing import build_application

    gil = make_user("gil")
    project = make_project(members={gil: Role.ANNOTATOR})
    client = Client()
    client.force_login(gil)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(build_application(), f"/ws/projects/{project.slug}/videos/",
                                         headers=[(b"origin", origin), (b"host", b"127.0.0.1:8000"),
                                                  (b"cookie", cookie)])

    async def handshake() -> bool:
        connected, _ = await communicator.connect(timeout=10)
        if connected:
            assert (await communicator.receive_json_from(timeout=10))["type"] == "snapshot"
            await communicator.disconnect()
        return connected

    assert async_to_sync(handshake)() is accepted
