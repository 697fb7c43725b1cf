"""Evaluation data on disk (DAVIS and SA-V val/test folders), read without Django and lazily.

A ``VideoRecord`` names one video's session frames (the JPEGs a segmenter session runs on) and
reads an object's ground-truth masks only when asked, so a data set of hundreds of videos costs
a directory listing until it is evaluated, and one object's masks at a time while it is.

Layouts (see ``docs/SAV_FORMAT.md``):

- DAVIS: ``JPEGImages/480p/{seq}/*.jpg`` and ``Annotations/480p/{seq}/*.png``. The PNG is a label
  map (palette or gray): each non-zero value is an object id. DAVIS 2016 copies hold one object
  as 255 (or 1): when 255 is a sequence's only non-zero value it is read as object 1.
- SA-V: ``{split}.txt`` (video ids), ``JPEGImages_24fps/{vid}/00000.jpg ...`` (every native frame)
  and ``Annotations_6fps/{vid}/{obj:03d}/00000.png ...`` (one binary PNG per object and annotated
  frame). Session frames are the annotated frames only: session index i is the i-th annotated
  frame name, shared by all objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np

from segmentation.frames import FrameSource, JpegFolderFrames
from segmentation.masks import read_mask_png, read_palette_png

LAYOUTS = ("davis", "sav")


class SelectedJpegFrames(JpegFolderFrames):
    """Only the named JPEGs of a folder (by file stem, in the given order): SA-V's annotated frames."""

    def __init__(self, folder: str | Path, stems: Iterable[str], cache_size: int = 16):
        super().__init__(folder, cache_size)
        by_stem = {path.stem: path for path in self.paths}
        stems = list(stems)
        missing = [stem for stem in stems if stem not in by_stem]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(f"{self.folder} lacks frame(s) {shown}")
        if not stems:
            raise ValueError(f"no frames selected from {self.folder}")
        self.paths = [by_stem[stem] for stem in stems]
        self._cache.clear()  # the folder's first frame, decoded for the size, may not be our frame 0


class VideoRecord(ABC):
    """One video to evaluate: its session frames and, on demand, each object's GT masks per session frame."""

    def __init__(self, name: str, frame_folder: Path, frame_names: list[str]):
        self.name = name
        self.frame_folder = frame_folder
        self.frame_names = frame_names

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    def open_frames(self) -> FrameSource:
        """A new frame source over the session frames (drop it after use: it caches decoded frames)."""
        return SelectedJpegFrames(self.frame_folder, self.frame_names)

    @cached_property
    def frames(self) -> FrameSource:
        """The session's frame source, opened on first use and kept with the record."""
        return self.open_frames()

    @property
    @abstractmethod
    def object_ids(self) -> list[int]:
        """Ids of the objects with ground truth in this video, ascending."""

    @abstractmethod
    def gt_masks(self, object_id: int) -> dict[int, np.ndarray]:
        """``{session frame index: bool mask}`` for every annotated frame (empty where the object is absent)."""

    def truncated(self, num_frames: int) -> VideoRecord:
        """The same video cut to its first ``num_frames`` session frames (quick runs, tests)."""
        if num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got {num_frames}")
        clone = object.__new__(type(self))
        cached = ("frames", "_values")  # recomputed on the shorter video
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in cached})
        clone.frame_names = self.frame_names[:num_frames]
        return clone

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.num_frames} frames)"


class DavisRecord(VideoRecord):
    def __init__(self, name: str, frame_folder: Path, annotation_folder: Path, frame_names: list[str]):
        super().__init__(name, frame_folder, frame_names)
        self.annotation_folder = annotation_folder

    def _annotations(self) -> list[tuple[int, Path]]:
        pairs = [(index, self.annotation_folder / f"{stem}.png") for index, stem in enumerate(self.frame_names)]
        return [(index, path) for index, path in pairs if path.is_file()]

    @cached_property
    def _values(self) -> dict[int, int]:
        """Object id -> pixel value, from one pass over the annotations (255 alone means object 1)."""
        values: set[int] = set()
        for _, path in self._annotations():
            values.update(int(v) for v in np.unique(read_palette_png(path)))
        values.discard(0)
        if values == {255}:
            return {1: 255}
        return {value: value for value in sorted(values)}

    @property
    def object_ids(self) -> list[int]:
        return list(self._values)

    def gt_masks(self, object_id: int) -> dict[int, np.ndarray]:
        if object_id not in self._values:
            raise KeyError(f"{self.name} has no object {object_id}; it has {self.object_ids}")
        value = self._values[object_id]
        return {index: read_palette_png(path) == value for index, path in self._annotations()}


class SavRecord(VideoRecord):
    def __init__(self, name: str, frame_folder: Path, annotation_folder: Path, objects: dict[int, str]):
        stems = sorted({p.stem for folder in objects.values() for p in (annotation_folder / folder).glob("*.png")})
        super().__init__(name, frame_folder, stems)
        self.annotation_folder = annotation_folder
        self._objects = objects

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def gt_masks(self, object_id: int) -> dict[int, np.ndarray]:
        if object_id not in self._objects:
            raise KeyError(f"{self.name} has no object {object_id}; it has {self.object_ids}")
        folder = self.annotation_folder / self._objects[object_id]
        masks = {}
        for index, stem in enumerate(self.frame_names):
            path = folder / f"{stem}.png"
            if path.is_file():
                masks[index] = read_mask_png(path)
        return masks


def _pick(available: list[str], wanted: Iterable[str] | None, what: str) -> list[str]:
    if wanted is None:
        return available
    wanted = list(wanted)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        raise FileNotFoundError(f"unknown {what}(s) {', '.join(unknown)}; available: {shown}")
    return wanted


def load_davis(root: str | Path, sequences: Iterable[str] | None = None, resolution: str = "480p") -> list[VideoRecord]:
    """DAVIS-layout sequences under ``root`` (all with both frames and annotations, or the named ones)."""
    root = Path(root)
    frames_root = root / "JPEGImages" / resolution
    annotations_root = root / "Annotations" / resolution
    for folder in (frames_root, annotations_root):
        if not folder.is_dir():
            raise FileNotFoundError(f"{root} is not a DAVIS folder: {folder} does not exist")
    available = sorted(p.name for p in annotations_root.iterdir() if p.is_dir() and (frames_root / p.name).is_dir())
    records: list[VideoRecord] = []
    for name in _pick(available, sequences, "sequence"):
        folder = frames_root / name
        stems = sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not stems:
            raise FileNotFoundError(f"{folder} holds no .jpg frames")
        records.append(DavisRecord(name, folder, annotations_root / name, stems))
    return records


def load_sav_folders(
    root: str | Path, split: str = "sav_val", sequences: Iterable[str] | None = None
) -> list[VideoRecord]:
    """SA-V val/test-layout videos under ``root``, listed by ``{split}.txt`` (or ``sav_{split}.txt``).

    Without a list file, every video folder of ``Annotations_6fps`` is used.
    """
    root = Path(root)
    frames_root = root / "JPEGImages_24fps"
    annotations_root = root / "Annotations_6fps"
    for folder in (frames_root, annotations_root):
        if not folder.is_dir():
            raise FileNotFoundError(f"{root} is not an SA-V folder: {folder} does not exist")
    list_file = next((p for p in (root / f"{split}.txt", root / f"sav_{split}.txt") if p.is_file()), None)
    if list_file is not None:
        available = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    else:
        available = sorted(p.name for p in annotations_root.iterdir() if p.is_dir())
    records: list[VideoRecord] = []
    for name in _pick(available, sequences, "video"):
        annotation_folder = annotations_root / name
        if not annotation_folder.is_dir():
            raise FileNotFoundError(f"{annotation_folder} does not exist (listed in {list_file})")
        objects = {int(p.name): p.name for p in annotation_folder.iterdir() if p.is_dir() and p.name.isdigit()}
        if not objects:
            raise FileNotFoundError(f"{annotation_folder} holds no object folders (000, 001, ...)")
        records.append(SavRecord(name, frames_root / name, annotation_folder, objects))
    return records


def load_dataset(
    root: str | Path, layout: str, split: str = "sav_val", sequences: Iterable[str] | None = None
) -> list[VideoRecord]:
    """Dispatch on ``layout`` (``davis`` or ``sav``)."""
    if layout == "davis":
        return load_davis(root, sequences)
    if layout == "sav":
        return load_sav_folders(root, split, sequences)
    raise ValueError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
