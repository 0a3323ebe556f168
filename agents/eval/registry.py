"""The eval suites by name: ``tilepilot eval NAME`` imports the module named here.

Each suite module exposes ``NAME: str`` and ``def run(ctx: EvalContext) -> SuiteResult`` (see
:mod:`agents.eval.core`). Modules are imported only when their suite runs, so a suite's heavy
imports (X server helpers, ASR baseline) never slow the others. Add a suite with one line.
"""

SUITES: dict[str, str] = {
    "review": "agents.eval.review_suite",
    "legibility": "agents.eval.legibility",
    "listen": "agents.eval.listen_suite",
    "grounding": "agents.eval.grounding",
    "desktop": "agents.eval.desktop_suite",
}
