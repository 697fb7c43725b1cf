"""The JSON shapes the API returns, for type checkers and readers (``total=False``: the server may
add fields; only the ones scripts rely on are named)."""

from __future__ import annotations

from typing import Any, TypedDict


class Project(TypedDict, total=False):
    id: int
    slug: str
    name: str
    labels: list[str]
    role: str | None
    video_count: int


class Member(TypedDict, total=False):
    username: str
    role: str


class User(TypedDict, total=False):
    id: int
    username: str
    email: str


class Token(TypedDict, total=False):
    id: int
    name: str
    token: str  # the secret: only in the answer to its creation
    created_at: str
    expires_at: str | None
    last_used_at: str | None


class Video(TypedDict, total=False):
    id: int
    name: str
    status: str
    progress: float
    failure_reason: str
    fps: float
    frame_count: int
    width: int
    height: int
    stride: int
    frame_indices: list[int]


class Masklet(TypedDict, total=False):
    id: int
    object_id: int
    label: str
    status: str
    video: int


class RleFrame(TypedDict):
    frame_index: int
    rle: dict[str, Any]  # COCO RLE: {"size": [h, w], "counts": str}


class MaskletMasks(TypedDict, total=False):
    size: list[int]
    frames: list[RleFrame]


class Review(TypedDict, total=False):
    id: int
    masklet: int
    verdict: str
    comment: str
    reviewer: str | None


class DatasetJob(TypedDict, total=False):
    id: int
    kind: str
    format: str
    status: str
    progress: float
    message: str
    error: str
    download: str | None


class ModelVersion(TypedDict, total=False):
    id: int
    name: str
    status: str
    sam2_config: str
    image_size: int


class TrainingRun(TypedDict, total=False):
    id: int
    status: str
    progress: float
    error: str
    produced_version: int | None
