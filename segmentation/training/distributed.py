"""Fine-tuning on several GPUs: ``fine_tune`` under torchrun with DistributedDataParallel.

``launch`` is what a training run calls when a machine has more than one GPU. It writes the
clips and the config to a job folder, starts ``torchrun --standalone --nproc_per_node=N -m
segmentation.training.distributed <job>`` and follows it: rank 0 appends one JSON line per
step to ``progress.jsonl`` (the caller's ``on_step`` gets them as they come), a ``cancel`` file
in the folder stops every rank before its next step, and rank 0 writes ``result.json`` at the
end. Each process runs the ordinary ``fine_tune`` inside the process group, which is what turns
on DDP there (see ``segmentation.training.loop``).

Backends: ``nccl`` with one GPU per rank; ``gloo`` on CPU (how the test runs it at world size 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from segmentation.training.clips import Clip
from segmentation.training.loop import FineTuneConfig, FineTuneResult, fine_tune

POLL_SECONDS = 0.5


def gpu_count() -> int:
    """CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class _FileFlag:
    """An ``Event``-like cancel flag that every rank reads from the job folder."""

    def __init__(self, path: Path):
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


def launch(
    clips: Sequence[Clip],
    config: FineTuneConfig,
    init_checkpoint: str | Path | None,
    out_checkpoint: str | Path,
    *,
    nproc: int,
    on_step: Callable[[int, float, dict[str, float]], None] | None = None,
    cancel: threading.Event | None = None,
    backend: str | None = None,
    job_dir: str | Path | None = None,
) -> FineTuneResult:
    """Run ``fine_tune`` in ``nproc`` processes under torchrun; returns rank 0's result.

    Raises ``RuntimeError`` with the tail of the processes' output when torchrun fails.
    """
    backend = backend or ("nccl" if gpu_count() >= nproc else "gloo")
    owned = job_dir is None
    folder = Path(job_dir or tempfile.mkdtemp(prefix="masklet-ddp-"))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"clips": list(clips), "config": asdict(config),
                "init": str(init_checkpoint) if init_checkpoint else None, "out": str(out_checkpoint)},
               folder / "job.pt")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "segmentation.training.distributed", str(folder), "--backend", backend]
    log_path = folder / "torchrun.log"
    progress_path = folder / "progress.jsonl"
    seen = 0
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=Path(__file__).resolve().parents[2])
        try:
            while True:
                finished = process.poll() is not None
                seen = _follow(progress_path, seen, on_step)
                if cancel is not None and cancel.is_set():
                    (folder / "cancel").touch()
                if finished:
                    break
                time.sleep(POLL_SECONDS)
        except BaseException:
            process.kill()
            process.wait()
            raise
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"torchrun exited with {process.returncode}:\n{tail}")
    result = json.loads((folder / "result.json").read_text())
    if owned:
        for leftover in folder.iterdir():
            if leftover.name != "torchrun.log":
                leftover.unlink(missing_ok=True)
    checkpoint = Path(result["checkpoint"]) if result["checkpoint"] else None
    return FineTuneResult(result["steps_done"], result["cancelled"], checkpoint, result["seconds"],
                          result["history"])


def _follow(path: Path, seen: int, on_step: Callable[..., None] | None) -> int:
    """Feed ``on_step`` the progress lines written since the ``seen`` first ones."""
    if not path.exists():
        return seen
    lines = path.read_text().splitlines()
    complete = lines if path.read_text().endswith("\n") else lines[:-1]
    for line in complete[seen:]:
        entry = json.loads(line)
        if on_step is not None:
            on_step(entry["step"], entry["loss"], entry["metrics"])
    return len(complete)


def parameter_digest(model_state: dict[str, torch.Tensor]) -> str:
    """A hash of the weights: equal on every rank when DDP kept them in sync."""
    digest = hashlib.sha1()
    for key in sorted(model_state):
        digest.update(key.encode())
        digest.update(model_state[key].detach().to("cpu").float().numpy().tobytes())
    return digest.hexdigest()


def _worker(folder: Path, backend: str) -> None:
    """One torchrun process: join the group, fine-tune, rank 0 reports (see the module docstring)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    job = torch.load(folder / "job.pt", weights_only=False)
    config = FineTuneConfig(**job["config"])
    config.device = f"cuda:{local_rank}" if backend == "nccl" else "cpu"
    progress = (folder / "progress.jsonl").open("a") if rank == 0 else None

    def on_step(step: int, loss: float, metrics: dict[str, float]) -> None:
        if progress is not None:
            progress.write(json.dumps({"step": step, "loss": loss, "metrics": metrics}) + "\n")
            progress.flush()

    result = fine_tune(job["clips"], config, init_checkpoint=job["init"], out_checkpoint=job["out"],
                       on_step=on_step, cancel=_FileFlag(folder / "cancel"))
    # Every rank reports a digest of its weights: DDP keeps them identical.
    if result.model is not None:
        (folder / f"digest-{rank}.txt").write_text(parameter_digest(result.model.state_dict()))
    if rank == 0:
        if progress is not None:
            progress.close()
        payload = {"steps_done": result.steps_done, "cancelled": result.cancelled,
                   "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                   "seconds": result.seconds, "history": result.history, "world_size": dist.get_world_size()}
        tmp = folder / "result.json.tmp"
        tmp.write_text(json.dumps(payload))
        tmp.replace(folder / "result.json")
    dist.barrier()
    dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segmentation.training.distributed",
                                     description="One torchrun process of a distributed fine-tuning job.")
    parser.add_argument("job", type=Path, help="job folder written by segmentation.training.distributed.launch")
    parser.add_argument("--backend", choices=("nccl", "gloo"), default="nccl")
    args = parser.parse_args(argv)
    _worker(args.job, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
