"""The eval suites by name: ``tilepilot eval NAME`` imports the module named here.

Each suite module exposes ``NAME: str`` and ``def run(ctx: EvalContext) -> SuiteResult`` (see
:mod:`tilepilot.agents.eval.core`). Modules are imported only when their suite runs, so a suite's heavy
imports (X server helpers, ASR baseline) never slow the others. Add a suite with one line.
"""

SUITES: dict[str, str] = {
    "review": "tilepilot.agents.eval.review_suite",
    "legibility": "tilepilot.agents.eval.legibility",
    "listen": "tilepilot.agents.eval.listen_suite",
    "grounding": "tilepilot.agents.eval.grounding",
    "desktop": "tilepilot.agents.eval.desktop_suite",
}
