"""The agents' errors, and the single place that maps every user-facing error to an exit code.

``tools`` and ``model_runtime`` may not import ``agents``, so each package roots its own small
hierarchy; :data:`USER_ERRORS` joins them. Anything in it is a user mistake or an environment
condition and is printed as one line, never as a traceback.
"""

from tilepilot.model_runtime.errors import ModelRuntimeError
from tilepilot.tools.errors import ToolError


class TilepilotError(Exception):
    exit_code = 2


class UsageError(TilepilotError):
    pass


class RuleError(TilepilotError):
    """A rule file is invalid. ``str()`` is ``file:line: message`` (one per problem, joined)."""

    exit_code = 5


class RunError(TilepilotError):
    """A run folder is missing, incomplete or cannot be resumed."""


USER_ERRORS: tuple[type[Exception], ...] = (TilepilotError, ToolError, ModelRuntimeError)


def exit_code_for(err: BaseException) -> int:
    return int(getattr(err, "exit_code", 1))


class RuleProblemsError(RuleError):
    """Problems found in rule files; each is ``(file, line, message)`` and prints as ``file:line: message``."""

    def __init__(self, problems: list[tuple[str, int, str]]):
        self.problems = list(problems)
        # line 0 means the problem concerns the file as a whole (missing, unreadable, ...).
        super().__init__("\n".join(f"{file}:{line}: {message}" if line else f"{file}: {message}" for file, line, message in self.problems))
