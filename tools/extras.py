"""Optional dependencies: which extra brings each one, and one line naming it when it is missing.

The core install (``pip install tilepilot``) covers ``--help``, ``rules``, ``review --no-model`` and
``serve status``. Everything else arrives with an extra declared in pyproject.toml; a command that
needs one calls :func:`require` (or :func:`check`) before it does any work, so a user without it reads
``pip install 'tilepilot[audio]'`` instead of an ImportError's traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tilepilot.tools.errors import MissingExtraError

# Import name -> the extra (pyproject.toml [project.optional-dependencies]) that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "soundfile": "audio",
    "soxr": "audio",
    "av": "audio",
    "mss": "desktop",
    "pyautogui": "desktop",
    "Xlib": "desktop",
    "jeepney": "desktop",
    "jinja2": "eval",
    "tokenizers": "eval",
    "jiwer": "eval",
    "mcp": "mcp",
    "docx": "docx",
    "openpyxl": "docx",
}


def install_hint(extra: str) -> str:
    return f"pip install 'tilepilot[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    return [module for module, owner in EXTRA_OF_MODULE.items()
            if owner == extra and importlib.util.find_spec(module) is None]


def check(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` (one line) if any module of ``extra`` is missing; ``what`` needs it."""
    if missing := missing_modules(extra):
        raise MissingExtraError(f"{what} needs {', '.join(missing)} (the {extra} extra): {install_hint(extra)}")


def require(module: str, what: str) -> ModuleType:
    """Import ``module``, or raise one line naming its extra; ``what`` is the feature that needs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRA_OF_MODULE[module.split(".")[0]]
        raise MissingExtraError(f"{what} needs {module} (the {extra} extra): {install_hint(extra)}") from None
