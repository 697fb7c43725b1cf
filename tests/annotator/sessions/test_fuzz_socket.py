"""Property-based fuzzing of the annotation socket (hypothesis), every message type of protocol v1.

The socket is an annotator's on a ready video (the real ASGI app, the in-process GPU pool, the
classical backend). It gets short sequences of messages of each type with field values drawn from
the valid ones (the video's frames, existing object ids, points inside the picture, real RLE
masks) and from anything else JSON holds (NUL characters, lone surrogates, NaN, huge numbers,
wrong types, missing and unknown fields), and raw frames that are not messages at all (and, every
run, one a byte under the 2 MiB limit and one a byte over). After
every message: a reply arrives (the socket was not dropped), and when it is an error, nothing was
stored. The socket still answers ping at the end. Derandomized.

One socket serves the whole run (hypothesis drives it from a thread). ``MASKLET_FUZZ_SOCKET_EXAMPLES``
(default 8) sets the examples per message type, each a sequence of up to 4 messages of that type
(after a valid ``add_object`` in some, so there are objects to edit); the counts per type are
printed at the end (``-s``) and every type must have been sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.models import MaskFrame, MaskFrameRevision, Masklet, Prompt, Role
from engine import protocol
from segmentation.masks import encode_rle

from .conftest import embedded_only, run

pytestmark = [embedded_only, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("MASKLET_FUZZ_SOCKET_EXAMPLES", "8"))
SENT: Counter[str] = Counter()
REPLIES: Counter[str] = Counter()
WIDTH, HEIGHT, FRAMES = 160, 96, [0, 4, 8, 12, 16, 20]
#: Stands for the object the socket created last (filled in when the message is sent).
LATEST = "<latest object>"


def _rle(y0: int, x0: int, size: int) -> str:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return encode_rle(mask)["counts"]


any_text = st.text(st.characters(exclude_categories=()), max_size=12)
junk = st.none() | st.booleans() | any_text | st.integers(-(2**70), 2**70) | st.floats() | st.lists(
    st.integers(), max_size=3) | st.dictionaries(any_text, st.integers(), max_size=2)
coordinate = st.floats(-5, 200) | st.sampled_from([0, 1e308, -1e308, math.nan, math.inf, 159.99, 160])

FIELDS: dict[str, st.SearchStrategy] = {
    "object_id": st.just(LATEST) | st.just(LATEST) | st.sampled_from([1, 2]) | st.integers(-2, 2**40),
    "frame": st.sampled_from(FRAMES) | st.integers(-5, 25),
    "x": coordinate, "y": coordinate,
    "positive": st.booleans(),
    "box": st.sampled_from([[10, 10, 60, 50], [0, 0, 160, 96]]) | st.lists(coordinate, min_size=3, max_size=5),
    "counts": st.sampled_from([_rle(10, 10, 20), _rle(40, 60, 30), "0i0", ""]) | st.from_regex(r"[0-o]{0,20}",
                                                                                                fullmatch=True),
    "label": st.sampled_from(["", "car", "person", "boat"]),
    "op": any_text,
    "revision": st.integers(-1, 6),
    "direction": st.sampled_from(protocol.DIRECTIONS),
    "object_ids": st.just([LATEST]) | st.lists(st.sampled_from([LATEST, 1, 2]) | st.integers(-1, 5), max_size=3),
    "overwrite_human": st.booleans(),
}


#: Frames at the protocol's size limit: one byte under it (a paint whose RLE is all padding), and one over.
_PAINT = '{"v": 1, "type": "paint", "object_id": 1, "frame": 0, "counts": "%s"}'
AT_THE_LIMIT = [_PAINT % ("0" * (protocol.MAX_MESSAGE_BYTES - len(_PAINT) + 2 - 1)),
                _PAINT % ("0" * (protocol.MAX_MESSAGE_BYTES - len(_PAINT) + 2 + 1))]
RAW = st.sampled_from([" ", "nope", "[]", "[" * 5000, '{"v": 1}', '{"v": 1, "type": "ping", "id": 1e999}']) \
    | any_text.map(json.dumps)


@st.composite
def messages(draw, type_: str) -> str:
    """One frame of ``type_`` (``raw``: not a message at all), fields valid or not."""
    if type_ == "raw":
        return draw(RAW)
    msg: dict[str, Any] = {"v": 1, "type": type_}
    for name, field in protocol.CLIENT_MODELS[type_].model_fields.items():
        if name in msg or name == "id" or (not field.is_required() and draw(st.booleans())):
            continue
        if draw(st.integers(0, 9)) == 0 and field.is_required():
            continue  # a required field missing
        msg[name] = draw(junk if draw(st.integers(0, 9)) == 0 else FIELDS[name])
    if draw(st.integers(0, 14)) == 0:
        msg[draw(any_text)] = draw(junk)  # an unknown field
    if draw(st.integers(0, 14)) == 0:
        msg["v"] = draw(junk)
    return json.dumps(msg)  # NaN and Infinity as JSON's common extension; surrogates escaped


def _state() -> tuple:
    rows = tuple(Masklet.objects.order_by("pk").values_list("pk", "label", "status", "lock_holder_id"))
    return rows, Prompt.objects.count(), MaskFrame.objects.count(), MaskFrameRevision.objects.count()


def test_no_message_drops_the_socket_or_stores_anything_when_refused(make_user, make_project, make_ready_video,
                                                                     open_socket):
    ann = make_user("ann")
    project = make_project(members={ann: Role.ANNOTATOR}, labels=["car", "person"])
    video = make_ready_video(project)
    assert (video.width, video.height, video.annotated_frame_indices()) == (WIDTH, HEIGHT, FRAMES)
    state = database_sync_to_async(_state)
    ids = itertools.count(1)
    latest = [1]

    async def exchange(ws, type_: str, text: str) -> None:
        """Send one frame; its final reply must come (the socket stays up); a refusal stores nothing."""
        data = json.loads(text) if type_ != "raw" else None
        if isinstance(data, dict):
            data["id"] = next(ids)
            for name, value in data.items():
                if value == LATEST or value == [LATEST]:
                    data[name] = latest[0] if value == LATEST else [latest[0]]
            text = json.dumps(data)
        re = data["id"] if isinstance(data, dict) else None
        before = await state()
        await ws.send_raw(text)
        started = False
        while True:
            reply = await ws.until(lambda m: (m.get("re") == re and m["type"] != "worker")
                                   or (re is None and m["type"] == "error"), timeout=60)
            if reply["type"] != "track_started":
                break
            started = True  # frames a track stores before failing are kept by design
        if reply["type"] == "object" and reply["masklet"]["locked_by_me"]:
            latest[0] = reply["masklet"]["object_id"]
        REPLIES[reply["type"] if reply["type"] != "error" else f"error {reply['code']}"] += 1
        if reply["type"] == "error" and not started:
            assert await state() == before, (text[:300], reply)
        SENT[type_] += 1

    async def scenario() -> None:
        connected, code, ws = await open_socket(ann, video)
        assert connected, code
        loop = asyncio.get_running_loop()
        latest[0] = (await ws.request("add_object", label="car"))["masklet"]["object_id"]  # something to edit

        def fuzz(type_: str) -> None:
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(add_first=st.booleans(), sequence=st.lists(messages(type_), min_size=1, max_size=4))
            def one(add_first: bool, sequence: list[str]) -> None:
                if add_first:  # a fresh object, locked to me, to edit
                    created = asyncio.run_coroutine_threadsafe(ws.request("add_object"), loop).result(timeout=120)
                    latest[0] = created["masklet"]["object_id"]
                for text in sequence:
                    asyncio.run_coroutine_threadsafe(exchange(ws, type_, text), loop).result(timeout=120)

            one()

        for text, code in zip(AT_THE_LIMIT, ("bad_message", "too_large"), strict=True):  # the edges, every run
            assert len(text.encode()) - protocol.MAX_MESSAGE_BYTES in (-1, 1)
            await exchange(ws, "raw", text)
            assert REPLIES[f"error {code}"] > 0, REPLIES
        # One socket for the whole run: hypothesis drives it from a thread, the exchanges run on this loop.
        for type_ in [*sorted(protocol.CLIENT_MODELS), "raw"]:
            await asyncio.to_thread(fuzz, type_)
        assert (await ws.request("ping"))["type"] == "pong"
        await ws.close()

    run(scenario)
    print("\nsocket fuzz: messages per type:", dict(sorted(SENT.items())), "total", sum(SENT.values()))
    print("replies:", dict(sorted(REPLIES.items())))
    assert set(SENT) == set(protocol.CLIENT_MODELS) | {"raw"}, SENT
    # Valid messages got through too: the fuzzing reached the code behind the checks.
    assert all(REPLIES[kind] > 0 for kind in ("mask", "object", "object_deleted", "pong")), REPLIES
