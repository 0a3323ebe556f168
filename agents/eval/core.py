"""The eval harness core: systems (columns), the per-suite context, results, and running a suite.

A *system* is one ``--model M [--base-url URL]`` pair: the tiny model, the real model behind a
URL, a checkpoint folder, or the reference answerer ``oracle[:p]``. A *suite* (registered by name
in :mod:`tilepilot.agents.eval.registry`) generates its labelled cases, runs the real agent path against
``ctx.connect(answerer)`` and scores the outcome from its labels, never from the model's claims.

For ``oracle[:p]`` :meth:`EvalContext.connect` starts an in-process :class:`~tilepilot.agents.eval.rigs.oracle.
OracleServer` (once per suite and system; the core closes it) that answers from the suite's
``answerer``; every other model goes through :func:`tilepilot.agents.backend.connect`, as the agents do.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from pydantic import BaseModel

from tilepilot.agents.errors import UsageError
from tilepilot.agents.eval.registry import SUITES
from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.profiles import CoordinateConvention

if TYPE_CHECKING:
    from tilepilot.agents.eval.rigs.oracle import Answerer, OracleServer

ORACLE = "oracle"
# The oracle answering in each coordinate convention a model profile may declare (ModelProfile.coordinates).
ORACLE_COORDINATES: dict[str, CoordinateConvention] = {ORACLE: "pixels", f"{ORACLE}-normalized": "normalized"}
BBox = tuple[float, float, float, float]


class SystemSpec(BaseModel):
    """One column of the table: ``--model M [--base-url URL]``."""

    label: str  # "oracle", "oracle:0.5", "tiny", "gemma-4-12b@http://gpu:8000"
    model: str  # "oracle", "oracle:0.5", "tiny", "gemma-4-12b", a checkpoint folder
    base_urls: list[str] = []

    @property
    def oracle_p(self) -> float | None:
        """The share of cases ``oracle[:p]`` answers right; None for a real model."""
        return oracle_share(self.model)


class Miss(BaseModel):
    """One wrong or missed case, shown in report.html."""

    case: str  # case id
    detail: str  # one line: expected vs got
    image: str | None = None  # path (relative to the eval out dir) of a PNG/JPEG of the page/screenshot
    expected_box: BBox | None = None  # x0, y0, x1, y1 in that image's pixels
    predicted_box: BBox | None = None  # or a point as a zero-size box


class SuiteResult(BaseModel):
    suite: str
    system: str  # SystemSpec.label
    # Headline keys are in [0, 1]: precision/recall/f1, success_rate, hit_rate, cer. Extras (counts,
    # tokens per page, pages per second, oracle_unidentified) may be any number.
    metrics: dict[str, float]
    breakdown: dict[str, dict[str, float]] = {}  # "rule=pii-email" -> metrics, "budget=280,screen=1280x800" -> ...
    misses: list[Miss] = []
    seconds: float = 0.0  # wall time of the suite's run(), set by the core


class EvalContext:
    """What a suite gets, per system."""

    def __init__(self, system: SystemSpec, out_dir: Path, small: bool, dataset: Path | None = None, root: Path | None = None,
                 keep_runs: bool = False):
        self.system = system
        self.out_dir = Path(out_dir)  # this suite+system's own folder (write images and runs here)
        self.root = Path(root) if root else self.out_dir  # the eval folder: Miss.image paths are relative to it
        self.small = small  # True in the test run: a small variant of the suite
        self.dataset = dataset  # --dataset DIR, for suites that accept users' own data
        # --keep-runs: keep every agent run folder (each with its eval.json), not only the misses;
        # `tilepilot export` turns the successful ones into a fine-tuning set.
        self.keep_runs = keep_runs
        self.oracle: OracleServer | None = None  # started by the first connect() of an oracle system

    def connect(self, answerer: "Answerer | None" = None) -> ChatClient:
        """A real ChatClient for the system (a new one per call: agents close theirs when done)."""
        p = self.system.oracle_p
        if p is None:
            from tilepilot.agents.backend import connect

            return connect(self.system.model, self.system.base_urls or None, quiet=True)
        from tilepilot.agents.eval.rigs.oracle import OracleServer, oracle_profile

        if answerer is None:
            raise UsageError(f"suite gave no answerer: --model {self.system.model} cannot run it")
        if self.oracle is None:
            self.oracle = OracleServer(answerer, p).start()
        else:
            self.oracle.answerer = answerer
        profile = oracle_profile(ORACLE_COORDINATES[self.system.model.partition(":")[0]])
        client = ChatClient([self.oracle.base_url], profile, max_retries=1, backoff_s=0.1)
        client.check()
        return client

    def relative(self, path: Path) -> str:
        """``path`` (under out_dir) as Miss.image wants it: relative to the eval folder."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def close(self) -> None:
        if self.oracle is not None:
            self.oracle.close()
            self.oracle = None


# -- systems from the command line ------------------------------------------------------------


def oracle_share(model: str) -> float | None:
    """``oracle`` -> 1.0, ``oracle:0.5`` -> 0.5 (``oracle-normalized`` likewise), anything else -> None."""
    name, _, share = model.partition(":")
    if name not in ORACLE_COORDINATES:
        return None
    try:
        p = float(share) if share else 1.0
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"--model {model}: write oracle or oracle:P with P between 0 and 1, e.g. oracle:0.5")
    return p


def parse_systems(models: Sequence[str], base_urls: Sequence[str]) -> list[SystemSpec]:
    """Pair ``--model`` and ``--base-url`` options into systems.

    URLs pair, in order, with the models that are not the oracle (it needs none); ``-`` stands for
    "the managed local server". With one real model, every URL is one of its replicas (as in the
    other commands); a comma list gives one system several replicas.
    """
    models = list(models) or ["tiny"]
    real = [m for m in models if oracle_share(m) is None]
    urls = [u.strip() for u in base_urls]
    if len(real) == 1 and urls:
        groups = [[u for item in urls for u in item.split(",") if u.strip() and u != "-"]]
    else:
        if len(urls) > len(real):
            raise UsageError(f"{len(urls)} --base-url values for {len(real)} non-oracle --model values; "
                             "give at most one per model, in the same order ('-' = the managed local server)")
        groups = [[u for u in item.split(",") if u.strip() and u != "-"] for item in urls]
        groups += [[] for _ in range(len(real) - len(groups))]
    systems, pending = [], iter(groups)
    for model in models:
        group = [] if oracle_share(model) is not None else next(pending)
        label = model if not group else f"{model}@{','.join(group)}"
        systems.append(SystemSpec(label=label, model=model, base_urls=group))
    labels = [s.label for s in systems]
    if len(set(labels)) != len(labels):
        raise UsageError(f"the same system is given twice ({', '.join(labels)}); give each --model/--base-url pair once")
    return systems


# -- running ---------------------------------------------------------------------------------


def suite_module(name: str) -> ModuleType:
    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r}: choose one of {', '.join(sorted(SUITES))}")
    return importlib.import_module(SUITES[name])


def slug(label: str) -> str:
    """A folder name for a system label (URLs hold slashes and colons)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:60] or "system"
    return clean if clean == label else f"{clean}-{hashlib.sha256(label.encode()).hexdigest()[:6]}"


def run_suite(name: str, systems: Sequence[SystemSpec], out_dir: Path, *, small: bool = False,
              dataset: Path | None = None, keep_runs: bool = False, on_done: Callable[[SuiteResult], None] = lambda r: None) -> list[SuiteResult]:
    """Run one suite for every system, each in its own folder ``out_dir/<suite>/<system>``."""
    module = suite_module(name)
    if dataset is not None and not getattr(module, "ACCEPTS_DATASET", False):
        raise UsageError(f"--dataset is not supported by the {name} suite")
    results = []
    for system in systems:
        folder = Path(out_dir) / name / slug(system.label)
        folder.mkdir(parents=True, exist_ok=True)
        ctx = EvalContext(system, folder, small, dataset, root=Path(out_dir), keep_runs=keep_runs)
        started = time.monotonic()
        try:
            result = module.run(ctx)
            if ctx.oracle is not None:
                result.metrics.setdefault("oracle_unidentified", float(ctx.oracle.unidentified))
        finally:
            ctx.close()
        result = result.model_copy(update={"seconds": round(time.monotonic() - started, 3), "system": system.label})
        on_done(result)
        results.append(result)
    return results


# -- scoring helpers shared by the suites ------------------------------------------------------


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1; an empty side counts as perfect (nothing to find, nothing invented)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def share(hits: Iterable[bool]) -> float:
    """The share of True in ``hits`` (1.0 for none: nothing failed)."""
    values = list(hits)
    return sum(values) / len(values) if values else 1.0


def eval_cache_dir() -> Path:
    """Where suites cache their generated labelled data (~/.cache/tilepilot/eval)."""
    from tilepilot.model_runtime.tiny import cache_root

    path = cache_root() / "eval"
    path.mkdir(parents=True, exist_ok=True)
    return path
