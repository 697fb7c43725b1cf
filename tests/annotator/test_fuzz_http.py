"""Property-based fuzzing of every HTTP endpoint (hypothesis): whatever arrives, no 500, errors under
/api/ are JSON, and a refused request stores nothing.

The routes come from walking the URLconf (Django's admin excepted: it is Django's), so a new view is
fuzzed without being listed here. Each example is one request with a random method, path
parameters (the seeded rows' ids or any number), query string, and a body that is JSON (any
value, NUL characters and lone surrogates included, or nested thousands deep), a form, or raw
bytes under a random content type, sent signed in as a superuser (who gets past every permission
check), as an annotator of the project, or anonymously. Each example runs in a transaction rolled
back afterwards, so examples do not see each other's writes. Derandomized: CI runs the same examples every time.

``MASKLET_FUZZ_EXAMPLES`` (default 12) sets the examples per route; the counts per route are printed
at the end (``-s``) and must reach it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from urllib.parse import quote, urlencode

import numpy as np
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.models import DatasetJob, MissedObject, Role
from annotator.services import annotation
from annotator.services.videos import create_video_from_path, ingest_video
from fixtures.synthetic import PRESETS, write_video
from segmentation.masks import encode_rle

EXAMPLES = int(os.environ.get("MASKLET_FUZZ_EXAMPLES", "12"))
SEEN: Counter[str] = Counter()


def _routes(patterns=None, prefix: str = "") -> list[str]:
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if route.startswith("admin/"):
            continue
        if isinstance(entry, URLResolver):
            found += _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            found.append(route)
    return found


ROUTES = _routes()
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")

# -- strategies ---------------------------------------------------------------------------------

#: Any text, lone surrogates and NUL included (JSON carries them escaped).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
#: Text a form or query string can carry (UTF-8: no surrogates), control characters included.
form_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | any_text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)
#: The fields the views read, so values reach them rather than only unknown names.
known_fields = st.sampled_from(["username", "password", "name", "labels", "file", "path", "config", "image_size",
                                "version", "action", "user", "user_id", "role", "split", "videos", "verdict", "reason",
                                "final_reason", "comment", "frame", "points_per_side", "video", "format", "start",
                                "end", "fps", "status", "enabled", "q", "next"])
field_names = known_fields | form_text


@st.composite
def bodies(draw) -> tuple[bytes, str | None]:
    kind = draw(st.sampled_from(["none", "json", "json-object", "deep", "form", "raw"]))
    if kind == "none":
        return b"", None
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), "application/json"
    if kind == "json-object":
        return json.dumps(draw(st.dictionaries(field_names, json_values, max_size=5))).encode(), "application/json"
    if kind == "deep":
        depth = draw(st.sampled_from([33, 1000, 5000, 100_000]))
        return (b"[" * depth + b"]" * depth), "application/json"
    if kind == "form":
        fields = draw(st.dictionaries(field_names, form_text | st.lists(form_text, max_size=3), max_size=5))
        return urlencode(fields, doseq=True).encode(), "application/x-www-form-urlencoded"
    content_type = draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain",
                                         "multipart/form-data; boundary=xyz", "multipart/form-data"]))
    return draw(st.binary(max_size=200)), content_type


def path_values(rows: dict[str, object]) -> dict[str, st.SearchStrategy]:
    numbers = st.integers(0, 2**64) | st.integers(0, 30)
    return {
        "slug": st.sampled_from([rows["slug"], "no-such-project"])
        | st.from_regex(r"[-a-zA-Z0-9_]{1,20}", fullmatch=True),
        "video_id": st.just(rows["video_id"]) | numbers,
        "masklet_id": st.just(rows["masklet_id"]) | numbers,
        "job_id": st.just(rows["job_id"]) | numbers,
        "missed_id": st.just(rows["missed_id"]) | numbers,
        "frame_index": st.sampled_from([0, 4, 8, 3]) | numbers,
    }


# -- the seeded rows ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory):
    """The video every route's world ingests: rendered once (the file is only read)."""
    return write_video(PRESETS["tiny"], tmp_path_factory.mktemp("fuzz") / "tiny.mp4")


@pytest.fixture
def world(make_user, make_project, settings, tmp_path, tiny_mp4):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FRAMES_ROOT = tmp_path / "frames"
    settings.DATA_DIR = tmp_path
    root, ann = make_user("root", superuser=True), make_user("ann")
    project = make_project("Fuzz", slug="fuzz", members={root: Role.ADMIN, ann: Role.ANNOTATOR}, labels=["car"])
    video = create_video_from_path(project, tiny_mp4, schedule_ingest=False)
    ingest_video(video.id)
    video.refresh_from_db()
    masklet = annotation.create_masklet(video, root, label="car")
    mask = np.zeros((video.height, video.width), bool)
    mask[10:30, 10:40] = True
    annotation.record_edit(masklet, root, frame_index=0, kind="click", payload={"x": 20, "y": 20, "positive": True},
                           rle=encode_rle(mask), session_id="fuzz")
    job = DatasetJob.objects.create(project=project, kind="export", format="sav", created_by=root)
    rle = encode_rle(mask)
    missed = MissedObject.objects.create(video=video, frame_index=0, rle_counts=rle["counts"], area=int(mask.sum()),
                                         bbox=[10, 10, 30, 20], score=0.9)
    return {"root": root, "ann": ann, "slug": project.slug, "video_id": video.id, "masklet_id": masklet.id,
            "job_id": job.id, "missed_id": missed.id}


COUNTED = [model for label in ("annotator", "engine") for model in apps.get_app_config(label).get_models()]


@functools.cache
def _count_query() -> tuple[str, tuple]:
    """One SELECT of every model's ``objects.count()``, each a subquery (built once: the ORM compiling 25 counts
    cost more than running them, before and after every refused request)."""
    parts, params = [], []
    for model in COUNTED:
        sql, values = model.objects.all().values("pk").query.sql_with_params()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS counted)")
        params += values
    return "SELECT " + ", ".join(parts), tuple(params)


def _counts() -> dict[str, int]:
    """Rows per model of the project's apps."""
    with connection.cursor() as cursor:
        cursor.execute(*_count_query())
        row = cursor.fetchone()
    return {model.__name__: count for model, count in zip(COUNTED, row, strict=True)}


def _sessions(world) -> dict[str, str]:
    """A signed-in session per persona for one route's examples (a login writes its session and runs the login
    signals: done once per route, not once per example). An example that logs out or rotates its session key
    does it inside the example's rolled-back transaction, so the next example finds the session as it was."""
    keys = {}
    for who in ("root", "ann"):
        client = Client()
        client.force_login(world[who])
        keys[who] = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return keys


def _request(client: Client, method: str, url: str, body: bytes, content_type: str | None):
    extra = {"content_type": content_type} if content_type else {}
    return client.generic(method, url, body, **extra)


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES)
def test_no_request_gets_a_500(route, world):
    params = _PARAM.findall(route)
    values = path_values(world)
    signed_in = _sessions(world)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
           path=st.fixed_dictionaries({name: values.get(name, st.integers(0, 99)) for _, name in params}),
           query=st.dictionaries(field_names, form_text, max_size=3), body=bodies(),
           who=st.sampled_from(["root", "ann", None]))
    def one(method, path, query, body, who):
        url = "/" + _PARAM.sub(lambda m: quote(str(path[m.group(2)]), safe=""), route)
        if query:
            url += "?" + urlencode(query)
        client = Client()  # a fresh cookie jar per example, signed in with the persona's session
        if who:
            client.cookies[django_settings.SESSION_COOKIE_NAME] = signed_in[who]
        with transaction.atomic():
            before = _counts()
            response = _request(client, method, url, *body)
            status = response.status_code
            label = f"{method} {url[:120]} body={body[0][:80]!r} ({body[1]})"
            assert status < 500, f"{label} -> {status}: {response.content[:500]!r}"
            if status >= 400:
                assert _counts() == before, f"{label} was refused ({status}) but stored something"
                if url.startswith("/api/") and method != "HEAD":  # HEAD: the same answer without its body
                    error = json.loads(response.content)["error"]
                    assert isinstance(error["message"], str) and error["message"], (label, error)
                    assert isinstance(error["code"], str) and error["code"], (label, error)
                    assert error["field"] is None or isinstance(error["field"], str), (label, error)
            transaction.set_rollback(True)
        SEEN[route] += 1

    one()
    assert SEEN[route] >= EXAMPLES


def test_every_route_was_fuzzed():
    """Runs after the fuzzing (same module, later in order): prints the examples per route."""
    if not SEEN:
        pytest.skip("run together with test_no_request_gets_a_500")
    print("\nHTTP fuzz examples per route:")
    for route in ROUTES:
        print(f"  {SEEN[route]:4d}  /{route}")
    assert set(SEEN) == set(ROUTES)
