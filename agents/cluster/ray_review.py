"""``tilepilot review FOLDER --cluster auto|auto:N|ray://HOST:PORT``: documents as Ray tasks, one run folder.

The driver checks the inputs (rules, model endpoint, the list of PDFs; it opens no PDF), starts or
joins Ray, and keeps at most :data:`WINDOW_PER_WORKER` tasks per worker CPU in flight. Each task
reviews one document with the ordinary single-process path (:mod:`tilepilot.agents.cluster.documents`): the
same graph, its own bounded chunk pool towards the ``--base-url`` endpoints, its own checkpoint.
Tasks return a status line; findings stay on the shared run folder and are merged by streaming
(:mod:`tilepilot.agents.cluster.merge`), so the driver's memory does not grow with the number of documents.

Faults: Ray retries a task whose worker died (:data:`TASK_RETRIES`); the retry resumes the
document's run, so finished chunks are not sent again. ``--resume RUN`` skips finished documents.

``auto`` starts a private Ray on loopback: no dashboard, no usage statistics, a small object store,
``N`` worker CPUs (default: up to :data:`AUTO_MAX_WORKERS`). ``ray://HOST:PORT`` joins a running
cluster through Ray Client; every node then needs tilepilot installed and the run folder (``--out``)
on storage that all of them reach at the same path.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from tilepilot.agents.cluster.documents import DocumentOutcome, DocumentTask, FailedDocument, document_key, failed_marker, is_finished
from tilepilot.agents.cluster.merge import merge_run
from tilepilot.agents.errors import RunError, UsageError
from tilepilot.agents.review.inputs import expand_inputs
from tilepilot.agents.review.runner import ReviewOptions
from tilepilot.agents.rules import build_policy
from tilepilot.agents.runs import Deadline, DeadlineReached, ProgressSink, Run, write_atomic

CLUSTER_NAME = "cluster.json"  # marks a cluster run folder: --resume continues it on a cluster
AUTO_MAX_WORKERS = 4
WINDOW_PER_WORKER = 2  # tasks queued per worker CPU: keeps workers busy without a driver-side backlog
TASK_RETRIES = 3  # Ray re-runs a task whose worker process died this many times
OBJECT_STORE_BYTES = 96 * 1024 * 1024  # tasks move status lines only; Ray's floor is about 75 MiB


class ClusterTarget(BaseModel):
    spec: str  # as given: auto, auto:N or ray://HOST:PORT
    address: str  # "local" (start one) or the ray:// address
    workers: int | None = None  # worker CPUs of a local Ray


class ClusterInfo(BaseModel):
    """``cluster.json``: where the run ran, and what Ray's start cost."""

    spec: str
    address: str
    workers: int
    startup_s: float


def parse_cluster(spec: str) -> ClusterTarget:
    if spec == "auto" or spec.startswith("auto:"):
        count = spec.partition(":")[2]
        if count and not (count.isdigit() and int(count) >= 1):
            raise UsageError(f"--cluster {spec}: the worker count after auto: must be a positive number, e.g. auto:2")
        return ClusterTarget(spec=spec, address="local", workers=int(count) if count else None)
    if spec.startswith("ray://") and len(spec) > len("ray://"):
        return ClusterTarget(spec=spec, address=spec)
    raise UsageError(f"--cluster must be auto, auto:N or ray://HOST:PORT, got {spec!r}")


def is_cluster_run(run: Path | None) -> bool:
    return run is not None and (Path(run) / CLUSTER_NAME).is_file()


def start_ray(target: ClusterTarget) -> tuple[Any, int, float]:
    """Start (auto) or join Ray; returns the module, the worker CPUs and the seconds it took."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    try:
        import ray
    except ImportError:
        raise UsageError("--cluster needs Ray: pip install 'tilepilot[cluster]'") from None
    started = time.monotonic()
    try:
        if target.address == "local":
            workers = target.workers or max(1, min(AUTO_MAX_WORKERS, os.cpu_count() or 1))
            ray.init(address="local", num_cpus=workers, num_gpus=0, include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, _node_ip_address="127.0.0.1", log_to_driver=False,
                     logging_level=logging.ERROR)
        else:
            ray.init(address=target.address, log_to_driver=False, logging_level=logging.ERROR)
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    except Exception as err:  # Ray raises many kinds; the user needs one line
        raise RunError(f"--cluster {target.spec}: Ray did not start: {' '.join(str(err).split())[:200]}") from None
    return ray, workers, round(time.monotonic() - started, 3)


def review_on_cluster(options: ReviewOptions, cluster: str | None, *, out: Path | None, resume: Path | None,
                      password: str | None, base_urls: list[str] | None, as_json: bool, console: Console,
                      max_runtime_s: float | None = None, progress: ProgressSink | None = None) -> str:
    """Run (or continue) a cluster review; returns what the CLI prints: report.html's path, or JSON with --json."""
    if resume is not None and not is_cluster_run(resume):
        raise UsageError(f"--resume {resume}: that run was not started with --cluster; resume it without --cluster")
    if resume is not None and cluster is None:
        cluster = ClusterInfo.model_validate_json((Path(resume) / CLUSTER_NAME).read_text(encoding="utf-8")).spec
    target = parse_cluster(cluster or "auto")
    if max_runtime_s is not None:
        options = options.model_copy(update={"max_runtime_s": max_runtime_s})
    paths = expand_inputs(options.paths)
    policy = build_policy("review", options.rules, target=str(paths[0]))  # a bad rule file: one line, nothing written
    urls = _endpoints(options, base_urls, as_json)
    if resume is None:  # the folders as given, not every file in them: run.json and each task stay small
        options = options.model_copy(update={"paths": [str(Path(p).expanduser().resolve()) for p in options.paths]})
        paths = expand_inputs(options.paths)
    deadline = Deadline.of(options.max_runtime_s, policy.limit("max_runtime_s"))
    ray, workers, startup_s = start_ray(target)
    try:
        with Run.open("review", options, out=out, resume=resume, deadline=deadline, progress=progress,
                      cluster=target.spec, workers=workers, ray_startup_s=startup_s) as run:
            run_dir = run.dir.resolve()
            write_atomic(run_dir / CLUSTER_NAME, ClusterInfo(spec=target.spec, address=target.address, workers=workers,
                                                             startup_s=startup_s).model_dump_json(indent=2))
            keys = [(document_key(str(p)), str(p)) for p in paths]
            pages = _schedule(ray, run, run_dir, keys, options, urls, password, workers)
            reviewed, failed, findings = merge_run(run_dir, keys, "no-model" if options.no_model else options.mode,
                                                   options.prefer)
            run.finish("done", documents=reviewed, failed_documents=failed, findings=findings, pages=pages)
    finally:
        ray.shutdown()
    if as_json:
        return json.dumps({"run": str(run_dir), "documents": reviewed, "failed_documents": failed, "findings": findings,
                           "findings_file": str(run_dir / "findings.json")})
    console.print(f"{reviewed} documents reviewed on {workers} Ray workers ({failed} failed), {findings} findings; "
                  f"Ray started in {startup_s:.1f} s")
    return str(run_dir / "report.html")


def _endpoints(options: ReviewOptions, base_urls: list[str] | None, quiet: bool) -> list[str]:
    """Probe the model endpoints once here (one-line error before any folder exists); workers get the URLs."""
    if options.no_model:
        return []
    from tilepilot.agents.backend import connect

    with connect(options.model, base_urls, quiet=quiet) as client:
        return list(client.base_urls)


def _schedule(ray: Any, run: Run, run_dir: Path, keys: list[tuple[str, str]], options: ReviewOptions, urls: list[str],
              password: str | None, workers: int) -> int:
    """Submit the unfinished documents with a bounded window; log each outcome as it lands. Returns pages reviewed."""
    from tilepilot.agents.cluster.documents import review_document

    remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(review_document)
    todo = deque((key, path) for key, path in keys if not is_finished(run_dir, key))
    run.emit("cluster_plan", documents=len(keys), finished_before=len(keys) - len(todo), workers=workers)
    run.progress.start("review", len(keys), "documents")
    run.progress.advance(len(keys) - len(todo))
    in_flight: dict[Any, tuple[str, str]] = {}
    pages = 0
    stopped = False
    option_fields = options.model_copy(update={"paths": []}).model_dump(mode="json")  # each task names its document
    while todo or in_flight:
        while todo and not stopped and len(in_flight) < workers * WINDOW_PER_WORKER:
            if run.deadline.expired():
                stopped = True
                break
            key, path = todo.popleft()
            left = None if run.deadline.limit_s is None else max(0.0, run.deadline.limit_s - (run.deadline.clock() - run.deadline.started))
            task = DocumentTask(key=key, path=path, run_dir=str(run_dir), options=option_fields, base_urls=urls,
                                password=password, max_runtime_s=left)
            in_flight[remote.remote(task)] = (key, path)
        if not in_flight:
            break
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            key, path = in_flight.pop(ref)
            outcome = _outcome(ray, ref, run_dir, key, path)
            pages += outcome.pages
            if outcome.status == "done":
                run.emit("document_done", key=key, path=path, findings=outcome.findings, pages=outcome.pages, pid=outcome.pid)
            elif outcome.status == "failed":
                run.emit("document_failed", key=key, path=path, reason=outcome.reason)
            else:
                stopped = True
                run.emit("document_stopped", key=key, path=path, reason=outcome.reason)
            run.progress.advance(1 if outcome.status != "deadline" else 0)
    if stopped:
        raise DeadlineReached(run.deadline.message())
    return pages


def _outcome(ray: Any, ref: Any, run_dir: Path, key: str, path: str) -> DocumentOutcome:
    """A task's outcome; a task Ray gave up on (its worker died every retry) becomes a failed document."""
    try:
        return ray.get(ref)
    except Exception as err:  # RayTaskError, WorkerCrashedError, ...: the driver goes on with the rest
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = f"{type(err).__name__}: {lines[-1].strip()[:200] if lines else 'the Ray task failed'}"
        write_atomic(failed_marker(run_dir, key), FailedDocument(path=path, reason=reason).model_dump_json())
        return DocumentOutcome(key=key, path=path, status="failed", reason=reason)
