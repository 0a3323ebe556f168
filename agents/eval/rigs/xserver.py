"""The X servers of the grounding and desktop suites, and the worker process that drives each one.

A suite starts one Xvfb per screen size (:func:`xvfb`) and reuses it for every app and case of
that size. The desktop agent clicks through pyautogui, which binds to one display per process,
so each screen size is driven by its own worker process (:func:`run_worker`): the suite's module
run as ``python -m MODULE --worker JOB.json``; the worker writes its result file and exits.
The model server (the oracle or a real one) stays in the parent; the worker gets its URL.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel

from tilepilot.agents.errors import RunError
from tilepilot.tools.errors import DisplayUnavailableError

START_TIMEOUT_S = 20.0


def require_xvfb(*also: str) -> str:
    """Path of Xvfb (checking the other binaries ``also`` too), or a one-line error naming the packages."""
    path = shutil.which("Xvfb")
    missing = (["Xvfb"] if path is None else []) + [b for b in also if shutil.which(b) is None]
    if path is None or missing:
        raise DisplayUnavailableError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; the grounding and desktop "
            "suites start their own virtual screens: apt-get install xvfb xdotool"
        )
    return path


@contextmanager
def xvfb(width: int, height: int) -> Iterator[str]:
    """A fresh Xvfb of ``width``x``height`` (no window manager); yields its display name (":N")."""
    binary = require_xvfb()
    workdir = Path(tempfile.mkdtemp(prefix="tilepilot-eval-x-"))
    log_path = workdir / "xvfb.log"
    read_fd, write_fd = os.pipe()
    with open(log_path, "wb") as log:
        # -displayfd: the server picks a free display number itself, so parallel runs never collide.
        proc = subprocess.Popen(
            [binary, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset", "-displayfd", str(write_fd)],
            pass_fds=(write_fd,), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    os.close(write_fd)
    try:
        number = _read_display_number(read_fd, START_TIMEOUT_S)
        if not number:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise DisplayUnavailableError(f"Xvfb {width}x{height} did not start: {tail[0]}")
        yield f":{number}"
    finally:
        os.close(read_fd)
        terminate_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _read_display_number(fd: int, timeout_s: float) -> str:
    # The server writes the number and the newline in two writes: read up to the newline.
    received, deadline = b"", time.monotonic() + timeout_s
    while not received.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            return ""
        received += chunk
    return received.decode().strip()


def terminate_process(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace_s)


class ClientSpec(BaseModel):
    """How a worker reaches the parent's model server (the API key travels in the environment)."""

    base_urls: list[str]
    profile_json: str  # ModelProfile.model_dump_json()
    max_retries: int = 3

    @classmethod
    def of_context(cls, ctx, answerer) -> "ClientSpec":
        """Connect the eval context's system (starting the oracle with ``answerer``) and describe it."""
        with ctx.connect(answerer) as client:
            return cls(base_urls=list(client.base_urls), profile_json=client.profile.model_dump_json(),
                       max_retries=client.max_retries)

    def connect(self):
        from tilepilot.model_runtime.client import ChatClient
        from tilepilot.model_runtime.profiles import ModelProfile

        profile = ModelProfile.model_validate_json(self.profile_json)
        return ChatClient(self.base_urls, profile, max_retries=self.max_retries, backoff_s=0.1,
                          api_key=os.environ.get("TILEPILOT_API_KEY"))


def run_worker(module: str, job: BaseModel, job_dir: Path, timeout_s: float = 900.0,
               stop: threading.Event | None = None) -> Path:
    """Run ``python -m module --worker job.json``; returns the result file it wrote.

    A worker that fails leaves its last stderr line in a one-line RunError; ``stop`` ends it early.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path = job_dir / "job.json", job_dir / "result.json"
    job_path.write_text(job.model_dump_json(), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    stderr_path = job_dir / "worker.stderr"
    deadline = time.monotonic() + timeout_s
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", module, "--worker", str(job_path), str(result_path)],
                                stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RunError(f"{module} worker ran past {timeout_s:.0f} s; see {stderr_path}")
                if stop is not None and stop.is_set():
                    raise RunError(f"{module} worker stopped: another screen's worker failed")
                time.sleep(0.2)
        finally:
            terminate_process(proc)
    if proc.returncode != 0 or not result_path.is_file():
        lines = stderr_path.read_text(errors="replace").strip().splitlines() or ["no output"]
        raise RunError(f"{module} worker failed (exit {proc.returncode}): {lines[-1]}; see {stderr_path}")
    return result_path


def run_screens(module: str, screens: Sequence[tuple[int, int]], job: Callable[[str, int, int], BaseModel],
                folder: Callable[[int, int], Path], timeout_s: float = 900.0) -> list[Path]:
    """One Xvfb and one worker per screen size, all at once; the result files in the order of ``screens``.

    In parallel because a worker waits on its app and the mouse about half the time (pyautogui's pauses,
    settle times): on two cores three screens finish in little more than the time of the largest.
    The first failure stops the other workers.
    """
    stop, failures = threading.Event(), []

    def one(size: tuple[int, int]) -> Path:
        width, height = size
        try:
            with xvfb(width, height) as display:
                return run_worker(module, job(display, width, height), folder(width, height), timeout_s=timeout_s, stop=stop)
        except BaseException as err:
            if not stop.is_set():
                failures.append(err)  # the cause, not the workers it stopped
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=len(screens)) as pool:
        futures = [pool.submit(one, size) for size in screens]
        try:
            for future in futures:
                future.exception()  # wait for all
        except BaseException:
            stop.set()
            raise
    if failures:
        raise failures[0]
    return [f.result() for f in futures]


POINTER_PARK = (3, 400)  # where the pointer waits before a case: bare background, never a fail-safe corner


def park_pointer(display: str) -> None:
    """Move the pointer to :data:`POINTER_PARK` with xdotool, not pyautogui: a model that clicked a screen
    corner left pyautogui's fail-safe armed, and one case must not spoil the next."""
    subprocess.run(["xdotool", "mousemove", str(POINTER_PARK[0]), str(POINTER_PARK[1])],
                   env={**os.environ, "DISPLAY": display}, check=True, capture_output=True, timeout=10)


def worker_main(argv: list[str], job_type: type[BaseModel], work) -> int:
    """``python -m SUITE --worker JOB.json RESULT.json``: run ``work(job)`` and write its result atomically."""
    if len(argv) != 4 or argv[1] != "--worker":
        print(f"usage: python -m {job_type.__module__} --worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    from tilepilot.agents.runs import write_atomic

    job = job_type.model_validate_json(Path(argv[2]).read_text(encoding="utf-8"))
    write_atomic(Path(argv[3]), work(job).model_dump_json())
    return 0


def screen_folder(out_dir: Path, width: int, height: int) -> Path:
    """Where one screen size's worker writes: ``out_dir/WxH``."""
    return out_dir / f"{width}x{height}"


class ScreenOutcome(Protocol):
    image: str | None  # a screenshot, relative to the worker's folder


OutcomeT = TypeVar("OutcomeT", bound=ScreenOutcome)


class WorkerOutcomes(Protocol[OutcomeT]):
    """What a worker returns: its outcomes."""

    outcomes: list[OutcomeT]


def gather_outcomes(module: str, screens: Sequence[tuple[int, int]], job: Callable[[str, int, int], BaseModel],
                    out_dir: Path, parse: Callable[[str], WorkerOutcomes[OutcomeT]], root: Path,
                    timeout_s: float = 900.0) -> list[OutcomeT]:
    """Run one worker per screen size (:func:`run_screens`) and return all their outcomes, in screen
    order, with each outcome's ``image`` made relative to ``root`` (the eval folder the report lives in).

    ``parse`` reads a worker's result from its JSON (the result model's ``model_validate_json``)."""
    outcomes: list[OutcomeT] = []
    for (width, height), path in zip(screens, run_screens(module, screens, job, lambda w, h: screen_folder(out_dir, w, h), timeout_s)):
        for outcome in parse(path.read_text(encoding="utf-8")).outcomes:
            if outcome.image:
                outcome.image = str((screen_folder(out_dir, width, height) / outcome.image).relative_to(root))
            outcomes.append(outcome)
    return outcomes
