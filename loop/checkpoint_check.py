"""Loading a checkpoint to check it, with nothing but settings: what ``loop.registry.check_loadable``
runs in a child process.

Kept apart from the registry (which imports the project's models) so that child needs no Django
apps: it imports torch and SAM 2 and reads ``settings.MODELS_ROOT``, and skips loading every app
of the project (a third of its start-up, measured in CPU time).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from engine.safe_paths import public_text

logger = logging.getLogger("loop.registry")


class RegistryError(Exception):
    """A registry action that cannot be done; the message is for people."""


def models_dir() -> Path:
    """Where uploaded and trained checkpoints live, and the only folder a checkpoint may be registered from."""
    return Path(settings.MODELS_ROOT)


def shown(checkpoint: str | Path) -> str:
    """A checkpoint as people see it: relative to the models folder (never the server path)."""
    path = Path(checkpoint).resolve()
    root = models_dir().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def load_check(checkpoint: str | Path, config: str, image_size: int) -> None:
    """Build the inference model of ``config`` at ``image_size`` and load ``checkpoint`` into it, or raise.

    Loading for real (on CPU, so any process can check) is the only test that catches a
    truncated file, a state dict of another size or a SAM 1 checkpoint.
    """
    from segmentation import sam2_model  # torch: in the job's child process only (check_loadable)

    try:
        sam2_model.resolve_config(config)
        sam2_model.image_size_overrides(image_size)
        sam2_model.build_model(config, checkpoint=checkpoint, image_size=image_size, device="cpu")
    except (FileNotFoundError, ValueError, sam2_model.CheckpointMismatchError) as error:
        raise RegistryError(public_text(str(error), [(models_dir(), "")])) from None
    except Exception as error:  # hydra and torch raise many types for a broken file or config
        logger.info("loading %s with %s failed: %r", config, checkpoint, error)  # the Python text, for the log only
        raise RegistryError(f"{shown(checkpoint)} could not be loaded as a {config} model: it is not a SAM 2 "
                            "checkpoint of that config, or the file is cut short") from None
