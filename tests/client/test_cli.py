"""The ``masklet`` command's contract with scripts: exit codes, messages on stderr, and the
upload body and export unpacking it builds on."""

from __future__ import annotations

import json
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.test import RequestFactory
from masklet_client import OPERATIONS, Client
from masklet_client.cli import EXIT_CONNECTION, EXIT_REFUSED, EXIT_USAGE, parse, unpack
from masklet_client.errors import MaskletError
from masklet_client.upload import multipart_stream

from tests.client.conftest import TOKEN_RATE_PER_SECOND, masklet_runner
from tests.e2e.conftest import _free_port


def test_without_url_or_token_it_says_which_to_set_and_exits_2():
    no_url = masklet_runner(None, "secret")("projects", "list")
    assert no_url.returncode == EXIT_USAGE
    assert "MASKLET_URL" in no_url.stderr
    no_token = masklet_runner("http://127.0.0.1:1", None)("projects", "list")
    assert no_token.returncode == EXIT_USAGE
    assert "MASKLET_TOKEN" in no_token.stderr


def test_a_bad_command_line_exits_2_with_the_usage():
    result = masklet_runner("http://127.0.0.1:1", "secret")("export", "demo", "--format", "pdf", "--out", "x")
    assert result.returncode == EXIT_USAGE
    assert "invalid choice: 'pdf'" in result.stderr
    missing = masklet_runner("http://127.0.0.1:1", "secret")("videos", "upload", "demo", "/no/such/file.mp4")
    assert missing.returncode == EXIT_USAGE
    assert "/no/such/file.mp4: no such file" in missing.stderr


def test_json_counts_wherever_it_is_on_the_command_line():
    for argv in (["--json", "projects", "list"], ["projects", "--json", "list"], ["projects", "list", "--json"]):
        assert parse(argv).json is True, argv
    assert parse(["projects", "list"]).json is False


def test_a_server_that_is_not_there_exits_3():
    url = f"http://127.0.0.1:{_free_port()}"
    result = masklet_runner(url, "secret")("projects", "list")
    assert result.returncode == EXIT_CONNECTION
    assert f"Cannot reach {url}: Connection refused" in result.stderr


def test_a_refused_token_exits_1_with_the_servers_words(embedded_server):
    result = masklet_runner(embedded_server.url, "not-a-token")("projects", "list", "--json")
    assert result.returncode == EXIT_REFUSED
    assert result.stdout == ""
    assert result.stderr.startswith("masklet: error: 401 ")


@pytest.fixture(scope="module")
def staff_token(embedded_server) -> str:
    """A site admin's token on the embedded server, from ``api_token`` (its last word)."""
    return embedded_server.shell("from django.contrib.auth import get_user_model\n"
                                 "from django.core.management import call_command\n"
                                 "get_user_model().objects.create_superuser('script', 'script@example.org')\n"
                                 "call_command('api_token', 'script')").split()[-1]


def test_webhooks_are_added_listed_and_deleted(embedded_server, staff_token):
    masklet = masklet_runner(embedded_server.url, staff_token)
    assert masklet("projects", "create", "hooked", "--name", "Hooked").returncode == 0
    added = json.loads(masklet("webhooks", "add", "hooked", "https://93.184.215.14/masklet",
                               "--events", "video.ready,training_run.finished", "--json").stdout)
    assert added["secret"] and sorted(added["events"]) == ["training_run.finished", "video.ready"]
    listed = json.loads(masklet("webhooks", "list", "hooked", "--json").stdout)
    assert [(hook["id"], "secret" in hook) for hook in listed] == [(added["id"], False)]
    assert json.loads(masklet("webhooks", "deliveries", "hooked", str(added["id"]), "--json").stdout) == []
    unknown = masklet("webhooks", "add", "hooked", "https://93.184.215.14/x", "--events", "video.deleted")
    assert unknown.returncode == EXIT_REFUSED and "(field events" in unknown.stderr, unknown.stderr
    assert masklet("webhooks", "delete", "hooked", str(added["id"])).returncode == 0
    assert json.loads(masklet("webhooks", "list", "hooked", "--json").stdout) == []


def burst(url: str, token: str, statuses: list[int], **options) -> list[MaskletError | None]:
    """``2 * TOKEN_RATE_PER_SECOND`` concurrent ``list_projects`` calls with ``token``, each from its own
    ``Client(**options)`` (statuses of every response into ``statuses``); what each raised, or None."""
    def call(_: int) -> MaskletError | None:
        client = Client(url, token, **options)
        client.session.hooks["response"].append(lambda response, **_: statuses.append(response.status_code))
        try:
            client.list_projects()
        except MaskletError as error:
            return error
        return None

    with ThreadPoolExecutor(2 * TOKEN_RATE_PER_SECOND) as pool:
        return list(pool.map(call, range(2 * TOKEN_RATE_PER_SECOND)))


def test_a_429_is_retried_after_its_retry_after_and_raised_when_no_retry_is_left(embedded_server, staff_token):
    statuses: list[int] = []
    assert burst(embedded_server.url, staff_token, statuses) == [None] * (2 * TOKEN_RATE_PER_SECOND)
    assert 429 in statuses, statuses  # refused at least once, and each refusal was retried
    refusals = burst(embedded_server.url, staff_token, [], rate_limit_retries=0)
    assert {error.status for error in refusals if error is not None} == {429}, refusals  # raised, not retried


def test_a_paginated_list_is_read_whole_following_its_next_links(embedded_server, staff_token):
    client = Client(embedded_server.url, staff_token)
    made = [client.create_token(f"pager {i}")["id"] for i in range(2)]
    pager = Client(embedded_server.url, staff_token, page_size=1)
    pages: list[str] = []
    pager.session.hooks["response"].append(lambda response, **_: pages.append(response.url))
    one_by_one = pager.list_tokens()
    assert set(made) <= {token["id"] for token in one_by_one}
    assert len(one_by_one) == len({token["id"] for token in one_by_one}) == len(client.list_tokens()) >= 3
    assert len(set(pages)) == len(one_by_one), pages  # one page a token (a 429 retry asks the same page again)


#: Schema operations the client leaves out on purpose, and why.
NOT_IN_THE_CLIENT = {
    ("POST", "/api/session/"): "signing in with a password sets a cookie, for the browser; scripts use tokens",
    ("DELETE", "/api/session/"): "signing out of a cookie session",
    ("GET", "/api/schema/"): "the schema this test reads",
    ("GET", "/api/docs/"): "the docs page, for people",
    ("GET", "/api/projects/{slug}/videos/{video_id}/seen/"): "the annotation page's record of what a person looked at",
    ("POST", "/api/projects/{slug}/videos/{video_id}/seen/"): "recorded by the annotation page as a person steps",
    # The models page's own forms of operations the client calls by their resource paths.
    ("POST", "/api/projects/{slug}/models/versions/"): "register: POST models/ takes the same form",
    ("POST", "/api/projects/{slug}/models/promote/"): "promote with the version in the body: models/{id}/promote/",
    ("POST", "/api/projects/{slug}/models/runs/"): "start a run: POST training-runs/",
    ("POST", "/api/projects/{slug}/models/runs/cancel/"): "cancel the active run: training-runs/{id}/cancel/ names it",
}


def operation(method: str, path: str) -> tuple[str, str]:
    """Path parameters written ``{}``: their names are the server's business, the client fills them in order."""
    return method.upper(), re.sub(r"\{[^}]+\}", "{}", path)


def test_every_client_method_is_an_operation_of_the_served_schema_and_every_operation_has_one(embedded_server):
    response = requests.get(f"{embedded_server.url}/api/schema/", params={"format": "json"}, timeout=60)
    assert response.status_code == 200, response.text[:500]
    served = {operation(method, path) for path, item in response.json()["paths"].items() for method in item
              if method in ("get", "post", "put", "patch", "delete")}
    covered = {operation(op.method, op.path) for op in OPERATIONS.values()}
    left_out = {operation(method, path) for method, path in NOT_IN_THE_CLIENT}
    assert covered - served == set(), "client methods the server does not have"
    assert served - covered - left_out == set(), "API operations without a client method"


def test_the_streamed_upload_body_is_the_multipart_form_django_reads(tmp_path):
    payload = bytes(range(256)) * 4099  # not a multiple of any chunk size
    path = tmp_path / 'clip "1".mp4'
    path.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    with path.open("rb") as file:
        body, content_type = multipart_stream({"name": "clip", "allow_duplicate": "1"}, "file", path.name, file,
                                              lambda sent, total: seen.append((sent, total)))
        first = body.read(-1) + b"".join(iter(lambda: body.read(7000), b""))
        body.seek(0)  # a retried request (after a 429) sends it again
        again = b"".join(iter(lambda: body.read(65536), b""))
    assert first == again and len(first) == len(body)
    assert seen[-1] == (len(body), len(body))
    request = RequestFactory().generic("POST", "/", data=first, content_type=content_type)
    assert request.POST.dict() == {"name": "clip", "allow_duplicate": "1"}
    assert request.FILES["file"].name == "clip %221%22.mp4"
    assert request.FILES["file"].read() == payload


def test_an_export_naming_a_path_outside_its_folder_is_not_unpacked(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("sav_000001/ok.json", "{}")
        zipped.writestr("../escaped.txt", "gotcha")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MaskletError, match="outside its folder"):
        unpack(archive, out)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(out.iterdir()) == []


def test_an_export_unpacks_every_file_into_its_folder(tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("sav_000001/sav_000001_manual.json", '{"masklet": []}')
        zipped.writestr("sav_000001/00000.jpg", b"\xff\xd8")
    assert unpack(archive, tmp_path / "out") == 2
    assert Path(tmp_path / "out/sav_000001/sav_000001_manual.json").read_text() == '{"masklet": []}'
