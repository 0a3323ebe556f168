"""tilepilot: agents that review documents, operate desktop UIs and listen to audio, on your own machine.

This folder (``agents/api`` in the repository) is the root of the installed ``tilepilot`` package;
pyproject.toml maps the repository's folders under it: ``tilepilot.agents`` (orchestration),
``tilepilot.tools`` (I/O adapters), ``tilepilot.model_runtime`` (talking to the model) and
``tilepilot.shipped_rules`` (the rule files, data only).

Importing ``tilepilot`` is cheap: the API below is loaded on first use, so that ``tilepilot.tools``
or ``tilepilot.model_runtime`` can be imported without pulling in the agents.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads each name on first use
    from tilepilot import rules
    from tilepilot.agents.errors import USER_ERRORS, TilepilotError
    from tilepilot.api_types import (
        DesktopRequest, DesktopResult, ListenRequest, ListenResult, ReviewRequest, ReviewResult, RulesCheckResult,
        ServeStatus, TranscriptResult,
    )
    from tilepilot.operations import desktop, listen, review, serve_status
    from tilepilot.progress import ProgressEvent

try:
    __version__ = version("tilepilot")
except PackageNotFoundError:  # a source tree without an install
    __version__ = "0+unknown"

# name -> module that defines it; each module is imported only when the name is first used.
# (The operations live in operations.py, not review.py & co.: a submodule named `review` would
# replace the function `tilepilot.review` as soon as it was imported.)
_API = {
    "review": "tilepilot.operations",
    "desktop": "tilepilot.operations",
    "listen": "tilepilot.operations",
    "serve_status": "tilepilot.operations",
    "rules": "tilepilot",  # the submodule tilepilot.rules: check() and explain()
    **{name: "tilepilot.api_types" for name in (
        "ReviewRequest", "ReviewResult", "DesktopRequest", "DesktopResult", "ListenRequest", "ListenResult",
        "TranscriptResult", "RulesCheckResult", "ServeStatus")},
    "ProgressEvent": "tilepilot.progress",
    "TilepilotError": "tilepilot.agents.errors",
    "USER_ERRORS": "tilepilot.agents.errors",  # every user mistake: catch these for one-line messages
}

# Spelled out, not built from _API: type checkers read __all__ without running code (tests/agents/test_api.py
# checks that the two agree).
__all__ = [
    "__version__", "review", "desktop", "listen", "serve_status", "rules",
    "ReviewRequest", "ReviewResult", "DesktopRequest", "DesktopResult", "ListenRequest", "ListenResult",
    "TranscriptResult", "RulesCheckResult", "ServeStatus", "ProgressEvent", "TilepilotError", "USER_ERRORS",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        module = _API[name]
        value = import_module(f"tilepilot.{name}") if module == "tilepilot" else getattr(import_module(module), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tilepilot' has no attribute {name!r}")
