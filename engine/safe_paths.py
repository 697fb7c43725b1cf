"""The one place storage and export paths are built: from validated parts, always inside their root.

A *name* (a video name, a split, a project slug, a folder name of a dataset layout) becomes a
file or folder name in exports and storage, so it is checked before it is stored and again
when a path is built from it: up to ``MAX_NAME_LENGTH`` letters, digits, ``_``, ``-`` or
``.``, starting with a letter or digit. That rules out separators, ``..``, absolute paths,
NUL and every other control character. ``safe_join`` then resolves the result (symlinks
included) and refuses anything outside the root, so even a name stored before these checks,
or a symlink planted in a folder, cannot make a write land elsewhere.

``public_text`` takes server folders out of a message meant for people.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.core.exceptions import ValidationError

MAX_NAME_LENGTH = 200
_NAME = re.compile(r"\w[\w.-]*")
_UNSAFE_CHARS = re.compile(r"[^\w.-]+")
NAME_RULE = (f"up to {MAX_NAME_LENGTH} letters, digits, '_', '-' or '.', starting with a letter or digit "
             "(no slashes)")


class UnsafePath(ValueError):
    """A name that cannot be part of a path, or a path that would leave its root; the message is for people."""


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a safe file name (see the module doc), else ``UnsafePath`` saying what is wrong."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:60]) + "..."
        raise UnsafePath(f"invalid {what} {shown}: use {NAME_RULE}")
    return name


def clean_name(text: str, default: str = "video") -> str:
    """A safe name made from any text: runs of other characters become ``_``, then trimmed to the rule."""
    cleaned = _UNSAFE_CHARS.sub("_", text).strip("._-")[:MAX_NAME_LENGTH].rstrip("._-")
    return cleaned or default


def is_safe_name(name: object) -> bool:
    try:
        check_name(name)
    except UnsafePath:
        return False
    return True


def validate_video_name(value: str) -> None:
    """Model-field validator of ``Video.name`` (admin and model forms)."""
    try:
        check_name(value, "video name")
    except UnsafePath as exc:
        raise ValidationError(str(exc), code="unsafe_name") from None


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """``root / part / ...`` where every part is a checked name and the result resolves inside ``root``.

    ``root`` is resolved first (it may itself be a link, e.g. a data folder on another disk);
    the joined path is resolved with its symlinks and must stay under it. Nothing is created.
    """
    base = Path(root).resolve()
    for part in parts:
        check_name(part, "path part")
    target = base.joinpath(*parts)
    if not target.resolve().is_relative_to(base):
        raise UnsafePath(f"{'/'.join(parts)} leads outside its folder (a link points elsewhere)")
    return target


def public_text(text: str, roots: Iterable[tuple[str | os.PathLike, str]] = ()) -> str:
    """``text`` with server folders replaced by what people know them as.

    ``roots`` pairs a folder with its public label ("" drops the folder, leaving the path inside
    it); the data folder and the temporary folder are always replaced.
    """
    from django.conf import settings

    pairs = [*roots, (settings.DATA_DIR, "<data>"), (tempfile.gettempdir(), "<tmp>")]
    for root, label in sorted(pairs, key=lambda pair: -len(str(pair[0]))):  # longest first: nested folders
        for form in {str(root), str(Path(root).resolve())}:
            text = text.replace(form + os.sep, f"{label}/" if label else "").replace(form, label or ".")
    return text
