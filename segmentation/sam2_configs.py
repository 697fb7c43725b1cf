"""SAM 2's names without SAM 2: config names by every spelling, and what a model is called in the UI.

Torch-free on purpose, so web processes (the registry, the dashboard, the serving model's label)
resolve and show models without importing torch; ``segmentation.sam2_model`` builds them.
"""

from __future__ import annotations

from pathlib import Path

# Model sizes, by every spelling people use: Meta's file names ("hiera_t"), HF ids ("hiera-tiny")
# and plain words ("tiny").
_SIZE_ALIASES = {
    "t": "t",
    "tiny": "t",
    "s": "s",
    "small": "s",
    "b+": "b+",
    "bplus": "b+",
    "base_plus": "b+",
    "base-plus": "b+",
    "baseplus": "b+",
    "l": "l",
    "large": "l",
}
_VERSIONS = ("sam2.1", "sam2")
DEFAULT_VERSION = "sam2.1"

#: Every resolvable config name, as hydra knows it (Meta's ``configs/...`` paths).
CONFIGS: dict[str, str] = {
    f"{version}_hiera_{size}": f"configs/{version}/{version}_hiera_{size}.yaml"
    for version in _VERSIONS
    for size in ("t", "s", "b+", "l")
}


def resolve_config(name: str) -> str:
    """Map a friendly model name to the hydra config name Meta's builders take.

    Accepts ``"sam2.1_hiera_t"``, ``"sam2.1_hiera_tiny"``, ``"sam2.1-hiera-tiny"``, ``"tiny"``
    (SAM 2.1), ``"sam2_hiera_s"`` (SAM 2.0), HF ids like ``"facebook/sam2.1-hiera-large"``, and
    config paths like ``"configs/sam2.1/sam2.1_hiera_t.yaml"``.
    """
    raw = str(name).strip()
    key = raw.lower()
    if key.startswith("facebook/"):
        key = key[len("facebook/") :]
    key = Path(key).name if key.endswith((".yaml", ".yml")) else key
    key = key.removesuffix(".yaml").removesuffix(".yml").replace("-", "_")
    version = DEFAULT_VERSION
    for candidate in _VERSIONS:  # "sam2.1" before "sam2": the longer prefix wins
        if key.startswith(candidate + "_"):
            version, key = candidate, key[len(candidate) + 1 :]
            break
    key = key.removeprefix("hiera_")
    size = _SIZE_ALIASES.get(key) or _SIZE_ALIASES.get(key.replace("_", "-"))
    if size is None:
        choices = ", ".join(sorted(CONFIGS))
        raise ValueError(
            f"unknown SAM 2 config {raw!r}: choose one of {choices} "
            "(or a size alone: tiny, small, base_plus, large, meaning SAM 2.1)"
        )
    return CONFIGS[f"{version}_hiera_{size}"]


def describe(config_name: str, image_size: int, checkpoint: Path | None) -> str:
    """What serves, for the UI: e.g. ``"SAM 2.1 hiera-t @256 (random weights)"``."""
    stem = Path(config_name).stem  # "sam2.1_hiera_t"
    version, _, size = stem.partition("_hiera_")
    label = "SAM " + version.removeprefix("sam")
    weights = checkpoint.name if checkpoint is not None else "random weights"
    return f"{label} hiera-{size} @{image_size} ({weights})"
