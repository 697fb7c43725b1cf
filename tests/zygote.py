"""``python ARGS`` in processes forked from one interpreter that has done its slow imports once.

Tests that start many short Python processes (the settings cases, a browser-test server's
``manage.py shell -c`` calls) spent most of each one importing Django, NumPy, OpenCV, Celery and
Twisted again: 1-3 s a process on the 2-core machine, where a fork costs tens of milliseconds.

``Zygote(preload, env)`` starts this file as a script with ``env``; it runs ``preload`` (Python: the
imports, or ``django.setup()`` for a server's shell) once, then reads one JSON request a line. For
each it forks a child that runs ``ARGS`` as ``python ARGS`` would (``-c CODE`` or a script path),
in the working folder and environment given, stdin from /dev/null, stdout and stderr to files,
killed by SIGALRM after ``timeout`` s, and ends as the interpreter would (threads joined, atexit
handlers run); the zygote answers its exit status on a line. ``preload`` must not open what a child
would share (a database connection, a socket): close it before it returns.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ZygoteTimeout(AssertionError):
    """A child ran past its ``timeout`` (killed by SIGALRM)."""


class Zygote:
    """``run(args, timeout, env=None)``: ``python ARGS`` in a fork of an interpreter that ran ``preload``."""

    def __init__(self, preload: str, env: dict[str, str]):
        self.process = subprocess.Popen([sys.executable, __file__, preload], cwd=REPO_ROOT, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.folder = tempfile.TemporaryDirectory(prefix="masklet-zygote-")

    def run(self, args: list[str], timeout: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``python ARGS`` in the environment ``env`` (the zygote's own when None)."""
        out, err = Path(self.folder.name) / "stdout", Path(self.folder.name) / "stderr"
        request = {"args": args, "env": env, "cwd": str(REPO_ROOT), "timeout": timeout, "stdout": str(out),
                   "stderr": str(err)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the zygote ended (exit status {self.process.poll()})")
        returncode = int(answer)
        if returncode == -signal.SIGALRM:
            raise ZygoteTimeout(f"python {' '.join(args)[:80]} ran past {timeout} s")
        return subprocess.CompletedProcess(args, returncode, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.folder.cleanup()


def _child(request: dict) -> None:
    """In the forked child: run the request as ``python ARGS`` would, then exit with its status."""
    signal.alarm(request["timeout"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    if request["env"] is not None:
        os.environ.clear()
        os.environ.update(request["env"])
    os.chdir(request["cwd"])
    args, status = request["args"], 0
    try:
        if args[0] == "-c":
            sys.argv = ["-c", *args[2:]]
            sys.path[0] = ""  # as ``python -c``: the working folder
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        else:
            sys.argv = list(args)
            sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            status = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter's exit does first
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # without tearing every module down (~1 s on a loaded machine)


def main() -> None:
    sys.path[0] = str(REPO_ROOT)  # not tests/: the preload imports the project as manage.py would
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what the preload prints stays out of the answers
    exec(compile(sys.argv[1], "<preload>", "exec"), {"__name__": "__preload__"})
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            answers.close()
            _child(request)
        _, status = os.waitpid(pid, 0)
        answers.write(f"{os.waitstatus_to_exitcode(status)}\n")


if __name__ == "__main__":
    main()
