"""Interactive evaluation of a segmenter with the simulated annotator, per object, on DAVIS or SA-V folders.

    python -m segmentation.evaluate --data ../shared/data/davis-dev --layout davis --backend classical \\
        --protocol offline --clicks 3 --max-frames 8 --sequences blackswan,dog --out results.json

For every object it runs the chosen protocol (``offline``: J, F, J&F after 1..N prompted frames;
``online``: one forward pass pausing where J < 0.75) and, unless ``--target-clicks 0``, the
clicks needed to reach J&F >= 0.9 on every annotated frame (Masklet's effort metric), with the
paper's annotation-time model. Means are over OBJECTS, as SA-V's evaluator averages.

``--protocol review`` measures the quality radar instead: per object, ``--clicks`` clicks on the
first frame where it is visible and one propagation both ways, then each other frame's quality
score against its true J&F. ``summary.review`` holds ``auroc`` (score separating frames with
J&F < 0.7 from the rest), ``spearman`` (score vs J&F) and ``frames_to_find_90pct_bad``
``{"radar": N, "sequential": N}`` (frames examined, summed over objects, to find 90 % of each
object's bad frames lowest score first, and in frame order); see ``metrics.review_metrics``.

``run_evaluation`` is the same without the command line, for the Django engine and benchmarks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from segmentation.backends import BACKENDS, build_segmenter
from segmentation.clicker import (
    ProtocolResult,
    TargetResult,
    clicks_to_target,
    offline_protocol,
    online_protocol,
    review_protocol,
)
from segmentation.datasets import LAYOUTS, VideoRecord, load_dataset
from segmentation.metrics import review_metrics
from segmentation.segmenter import Segmenter

PROTOCOLS = ("offline", "online", "review")


def _curve(result: ProtocolResult, key: str, length: int) -> list[float]:
    """A score after 1..length prompted frames; a protocol that stopped early keeps its last value."""
    values = [getattr(step, key) for step in result.steps if getattr(step, key) is not None]
    if not values:
        return [getattr(result, key)] * length
    return [values[min(i, len(values) - 1)] for i in range(length)]


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else None


def _summary(objects: list[dict[str, Any]], protocol: str, max_frames: int) -> dict[str, Any]:
    """Means over the visible objects of ``objects`` (the per-object entries of ``run_evaluation``)."""
    counted = [entry for entry in objects if entry["visible"]]
    summary: dict[str, Any] = {"num_objects": len(counted)}
    if protocol == "review":
        summary["review"] = review_metrics((entry["review"]["scores"], entry["review"]["jf"]) for entry in counted)
        return summary
    for key in ("j", "f", "jf", "clicks", "prompted_frames", "annotation_seconds"):
        summary[key] = _mean([entry["protocol"][key] for entry in counted])
    if protocol == "offline":
        for key in ("j", "f", "jf"):
            curves = [entry["curve"][key] for entry in counted]
            summary[f"{key}_after"] = [_mean([curve[i] for curve in curves]) for i in range(max_frames)]
    targets = [entry["to_target"] for entry in counted if entry["to_target"] is not None]
    if targets:
        summary["clicks_to_target"] = _mean([t["clicks"] for t in targets])
        summary["target_reached"] = _mean([float(t["reached"]) for t in targets])
        summary["target_seconds"] = _mean([t["annotation_seconds"] for t in targets])
    return summary


def run_evaluation(
    segmenter: Segmenter,
    sequences: Sequence[VideoRecord],
    protocol: str = "offline",
    clicks: int = 3,
    max_frames: int = 8,
    progress: bool = True,
    target: float = 0.9,
    target_clicks: int = 20,
    on_object: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the protocol (and clicks-to-target unless ``target_clicks`` is 0) on every object of every video.

    Returns a JSON-ready dict: settings, per-video entries with per-object results and means,
    and ``summary`` with means over all objects. One session is opened per video and reset per
    object and measurement. ``clicks_to_target`` counts the whole budget for an object that
    never reached the target (so it is a lower bound when ``target_reached`` < 1).
    ``on_object`` is called with each object's entry once it is measured: progress, and a way
    to stop (an exception it raises ends the evaluation).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if clicks < 1 or max_frames < 1 or target_clicks < 0:
        raise ValueError("clicks and max_frames must be >= 1 and target_clicks >= 0")
    started = time.perf_counter()
    videos: list[dict[str, Any]] = []
    all_objects: list[dict[str, Any]] = []
    bar = tqdm(total=len(sequences), unit="video", disable=not progress, file=sys.stderr)
    try:
        for record in sequences:
            video_started = time.perf_counter()
            objects: list[dict[str, Any]] = []
            # A fresh source per video, dropped with the session, so decoded frames never pile up across videos.
            with segmenter.open_session(record.open_frames()) as session:
                for object_id in record.object_ids:
                    bar.set_postfix_str(f"{record.name} object {object_id}")
                    gt = record.gt_masks(object_id)
                    if protocol == "review":
                        review = review_protocol(session, gt, object_id, clicks)
                        entry = {"video": record.name, "object_id": object_id, "visible": review.visible,
                                 "review": asdict(review)}
                        objects.append(entry)
                        del gt
                        if on_object is not None:
                            on_object(entry)
                        continue
                    if protocol == "offline":
                        result = offline_protocol(session, gt, object_id, clicks, max_frames)
                    else:
                        result = online_protocol(session, gt, object_id, clicks, max_frames)
                    to_target: TargetResult | None = None
                    if target_clicks and result.visible:
                        to_target = clicks_to_target(session, gt, object_id, target, target_clicks)
                    entry = {
                        "video": record.name,
                        "object_id": object_id,
                        "visible": result.visible,
                        "protocol": asdict(result),
                        "curve": {key: _curve(result, key, max_frames) for key in ("j", "f", "jf")},
                        "to_target": None if to_target is None else asdict(to_target),
                    }
                    objects.append(entry)
                    del gt
                    if on_object is not None:
                        on_object(entry)
            all_objects.extend(objects)
            videos.append(
                {
                    "name": record.name,
                    "num_frames": record.num_frames,
                    "objects": objects,
                    "summary": _summary(objects, protocol, max_frames),
                    "seconds": time.perf_counter() - video_started,
                }
            )
            bar.update(1)
    finally:
        bar.close()
    return {
        "backend": segmenter.name,
        "protocol": protocol,
        "clicks_per_frame": clicks,
        "max_prompted_frames": max_frames,
        "target_jf": target,
        "target_click_budget": target_clicks,
        "videos": videos,
        "summary": _summary(all_objects, protocol, max_frames),
        "seconds": time.perf_counter() - started,
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """Per video and overall: J&F after 1..N prompted frames (offline) or at the end (online), J, F,
    clicks and seconds of the protocol, and clicks / success / seconds to reach the J&F target;
    for ``review``, the radar's numbers (frames pooled over the objects of a row)."""
    offline = results["protocol"] == "offline"
    n = results["max_prompted_frames"]
    target = results["target_click_budget"] > 0 and results["protocol"] != "review"
    columns: list[tuple[str, str, int]] = []  # header, summary key (index for curves), digits
    if results["protocol"] == "review":
        columns = [("frames", "review.frames", 0), ("bad", "review.bad_frames", 0), ("AUROC", "review.auroc", 3),
                   ("Spearman", "review.spearman", 3), ("radar", "review.frames_to_find_90pct_bad.radar", 0),
                   ("sequential", "review.frames_to_find_90pct_bad.sequential", 0)]
    else:
        if offline:
            columns += [(f"J&F@{i + 1}", f"jf_after:{i}", 3) for i in range(n)]
        columns += [("J", "j", 3), ("F", "f", 3), ("J&F", "jf", 3), ("clicks", "clicks", 1)]
        columns += [("secs", "annotation_seconds", 1)]
    if target:
        columns += [(f"clk>={results['target_jf']:g}", "clicks_to_target", 1), ("reached", "target_reached", 2)]
        columns += [("t.secs", "target_seconds", 1)]
    name_width = max([len("mean (objects)")] + [len(video["name"]) for video in results["videos"]])

    def cell(summary: dict[str, Any], key: str, digits: int) -> str:
        if "." in key:
            value: Any = summary
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return _fmt(value, digits)
        if ":" in key:
            name, index = key.split(":")
            values = summary.get(name) or []
            return _fmt(values[int(index)] if int(index) < len(values) else None, digits)
        return _fmt(summary.get(key), digits)

    def row(name: str, summary: dict[str, Any]) -> str:
        cells = [f"{name:<{name_width}}", f"{summary['num_objects']:>3}"]
        cells += [f"{cell(summary, key, digits):>{max(6, len(head))}}" for head, key, digits in columns]
        return "  ".join(cells)

    lines = [
        "  ".join([f"{'video':<{name_width}}", "obj"] + [f"{head:>{max(6, len(head))}}" for head, _, _ in columns])
    ]
    lines += [row(video["name"], video["summary"]) for video in results["videos"]]
    lines.append(row("all (pooled)" if results["protocol"] == "review" else "mean (objects)", results["summary"]))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segmentation.evaluate",
        description="Interactive J&F evaluation with the simulated annotator (SAM 2 paper protocols).",
    )
    parser.add_argument("--data", required=True, type=Path, help="data set root (DAVIS or SA-V val/test layout)")
    parser.add_argument("--layout", required=True, choices=LAYOUTS)
    parser.add_argument("--split", default="sav_val", help="SA-V list file {split}.txt or sav_{split}.txt")
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--config", help="sam2: model config name")
    parser.add_argument("--checkpoint", help="sam2: checkpoint path")
    parser.add_argument("--image-size", type=int, help="sam2: input size (multiple of 16)")
    parser.add_argument("--device", help="sam2: torch device (cpu, cuda, ...)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="offline")
    parser.add_argument("--clicks", type=int, default=3, help="clicks per prompted frame")
    parser.add_argument("--max-frames", type=int, default=8, help="prompted frames per object")
    parser.add_argument("--target", type=float, default=0.9, help="J&F every frame must reach")
    parser.add_argument("--target-clicks", type=int, default=20, help="click budget for the target (0: skip)")
    parser.add_argument("--sequences", help="comma-separated video names (default: all)")
    parser.add_argument("--limit-frames", type=int, help="use only each video's first N session frames")
    parser.add_argument("--out", type=Path, help="write the full results as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2 on bad arguments or data, like argparse)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.clicks < 1 or args.max_frames < 1 or args.target_clicks < 0:
        parser.error("--clicks and --max-frames must be at least 1, --target-clicks at least 0")
    if args.limit_frames is not None and args.limit_frames < 1:
        parser.error("--limit-frames must be at least 1")
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    sam2_options = {
        key: value
        for key, value in (
            ("config", args.config),
            ("checkpoint", args.checkpoint),
            ("image_size", args.image_size),
            ("device", args.device),
        )
        if value is not None
    }
    if sam2_options and args.backend != "sam2":
        parser.error(f"{', '.join('--' + k.replace('_', '-') for k in sam2_options)} only apply to --backend sam2")
    sequences = [name.strip() for name in args.sequences.split(",") if name.strip()] if args.sequences else None
    try:
        records = load_dataset(args.data, args.layout, args.split, sequences)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    if not records:
        parser.error(f"no videos found under {args.data}")
    if args.limit_frames:
        records = [record.truncated(args.limit_frames) for record in records]
    segmenter = build_segmenter(args.backend, **sam2_options)
    results = run_evaluation(
        segmenter,
        records,
        protocol=args.protocol,
        clicks=args.clicks,
        max_frames=args.max_frames,
        progress=not args.no_progress,
        target=args.target,
        target_clicks=args.target_clicks,
    )
    results["data"] = {"root": str(args.data), "layout": args.layout, "limit_frames": args.limit_frames}
    print(format_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
