"""Names and paths: one builder refuses anything that could leave its root (video names: test_video_names.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from engine.safe_paths import UnsafePath, check_name, clean_name, public_text, safe_join

ATTACKS = ["../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "a\x00b", "clip\n", "a\nb", "x" * 201, "", " x", ".hidden",
           "C:\\x"]


@pytest.mark.parametrize("name", ["sav_000001", "clip.v2", "a-b_c", "été", "x" * 200, "0"])
def test_safe_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", [*ATTACKS, None, 7])
def test_unsafe_names_are_refused_with_the_rule(name):
    with pytest.raises(UnsafePath, match="letters, digits"):
        check_name(name, "video name")


@pytest.mark.parametrize("text", ATTACKS)
def test_clean_name_always_gives_a_safe_name(text):
    assert check_name(clean_name(text)) == clean_name(text)
    assert clean_name("../../x") == "x"


def test_safe_join_stays_inside_and_refuses_links_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "in").mkdir(parents=True)
    outside.mkdir()
    assert safe_join(root, "in", "f.json") == root.resolve() / "in" / "f.json"
    (root / "in" / "inner").symlink_to(root / "in")  # a link that stays inside is fine
    assert safe_join(root, "in", "inner", "f.json").parent.name == "inner"
    (root / "escape").symlink_to(outside)
    with pytest.raises(UnsafePath, match="outside its folder"):
        safe_join(root, "escape", "f.json")
    (root / "file-link").symlink_to(outside / "f.json")
    with pytest.raises(UnsafePath, match="outside its folder"):
        safe_join(root, "file-link")
    for attack in ATTACKS:
        with pytest.raises(UnsafePath):
            safe_join(root, "in", attack)
    assert sorted(os.listdir(outside)) == []


def test_public_text_hides_server_folders(tmp_path):
    scratch = tmp_path / "scratch"
    text = (f"{scratch}/sav/x.json: bad; {settings.DATA_DIR}/media/v.mp4 missing; "
            f"{Path(settings.DATA_DIR).parent}/other")
    shown = public_text(text, [(scratch, "")])
    assert shown.startswith("sav/x.json: bad; <data>/media/v.mp4 missing")
    assert str(scratch) not in shown and str(settings.DATA_DIR) not in shown
