"""The front matter of a rule file: a strict pydantic schema (unknown keys are errors, never ignored).

The front matter is the part of a rule file that code enforces; the Markdown body is guidance for
the model. Every pattern field is a regular expression (see :mod:`tilepilot.agents.rules.patterns`), vetted
while the file loads, so a bad pattern is reported at its file and line instead of failing mid-run.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tilepilot.agents.rules.patterns import compile_pattern
from tilepilot.tools.keys import find

AgentName = Literal["review", "desktop", "listen"]
AGENT_NAMES: tuple[str, ...] = ("review", "desktop", "listen")
Severity = Literal["info", "low", "medium", "high", "critical"]
PiiDetector = Literal["email", "phone", "iban", "credit_card", "ssn"]
PII_DETECTORS: tuple[str, ...] = ("email", "phone", "iban", "credit_card", "ssn")
ACTION_KINDS = ("click", "move", "drag", "scroll", "type", "hotkey", "key", "wait", "done", "fail")


def _vet_pattern(source: str) -> str:
    compile_pattern(source)  # PatternError is a ValueError: pydantic reports it at this field
    return source


def _vet_glob(source: str) -> str:
    if not source or any(ch.isspace() for ch in source):
        raise ValueError(f"glob {source!r} must be non-empty and without spaces, e.g. 'ui.*'")
    return source


def split_combo(combo: str) -> list[str]:
    """``"ctrl+w"`` -> ``["ctrl", "w"]``; a trailing ``+`` is the plus key (``"ctrl++"``, ``"+"``)."""
    combo = combo.strip()
    if combo.endswith("+") and (combo == "+" or combo.endswith("++")):
        head = combo[:-2] if len(combo) > 1 else ""
        return [p.strip() for p in head.split("+") if p.strip()] + ["+"]
    return [p.strip() for p in combo.split("+") if p.strip()]


def _vet_combo(combo: str) -> None:
    """Every part of a key rule is a key the executor knows, or a glob: a misspelt key would match nothing."""
    parts = split_combo(combo)
    if not parts:
        raise ValueError(f"key combination {combo!r} is empty")
    for part in parts:
        if find(part) is None and not any(ch in part for ch in "*?["):
            raise ValueError(f"{part!r} in {combo!r} is not a key name (e.g. ctrl, alt, shift, enter, tab, f4, w)")


RulePattern = Annotated[str, AfterValidator(_vet_pattern)]
Glob = Annotated[str, AfterValidator(_vet_glob)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _parse_length(value: Any) -> int | str:
    """Pixels (a whole number) or a percentage string such as ``"80%"``."""
    if isinstance(value, bool):
        raise ValueError("expected pixels (a whole number) or a percentage like '80%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("pixels must be >= 0")
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage like '80%'") from None
        if not 0 <= pct <= 100:
            raise ValueError(f"percentage {value!r} must be between 0% and 100%")
        return value.strip()
    raise ValueError(f"{value!r} is not pixels (a whole number) or a percentage like '80%'")


Length = Annotated[int | str, BeforeValidator(_parse_length)]


class Region(_Strict):
    """A screen rectangle. Pixels and percentages are measured from the screen's top-left corner."""

    x: Length  # left edge
    y: Length  # top edge
    w: Length  # width
    h: Length  # height
    name: str | None = None  # what the guard's reason calls the region


class ActionRule(_Strict):
    """Which actions a confirm/deny entry concerns.

    Written as a string ``kind`` or ``kind:argument`` (both globs; the argument of a hotkey or key
    is its normalised combo such as ``ctrl+w``, of a click or drag its button, of a type action its
    text), or as a mapping that adds conditions (all must hold).
    """

    action: str = Field(description="kind or kind:argument glob, e.g. 'hotkey:alt+f4', 'type', 'click:right'")
    near_label: RulePattern | None = None  # the widget's name or role matches (accessibility tree); else a label within near_px
    near_px: int = Field(120, ge=0, le=2000)  # how near a label must be where no widget is named
    window: RulePattern | None = None  # the title of the window in front matches
    reason: str | None = None  # shown with the decision and in the audit log

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"action": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _known_kind(self) -> "ActionRule":
        kind = self.action.split(":", 1)[0]
        if not any(fnmatch.fnmatchcase(k, kind) for k in ACTION_KINDS):
            raise ValueError(f"action {self.action!r}: {kind!r} matches no action kind ({', '.join(ACTION_KINDS)})")
        kind, _, argument = self.action.partition(":")
        if kind.strip().lower() in ("hotkey", "key") and argument:
            _vet_combo(argument)
        return self


class ToolsPolicy(_Strict):
    allow: list[Glob] | None = None  # only these tools (null: all); later files can only narrow it
    deny: list[Glob] = []  # tool-name globs never used: ui.click, pdf.render, audio.* ...


class ActionsPolicy(_Strict):
    confirm: list[ActionRule] = []  # actions that need a yes first (a prompt, --yes, or an MCP elicitation)
    deny: list[ActionRule] = []  # actions never executed; the reason goes back to the model
    deny_regions: list[Region] = []  # screen rectangles no pointer action may touch
    deny_text: list[RulePattern] = []  # widget names and window titles never clicked or typed into
    allowed_windows: list[RulePattern] | None = None  # act only in windows whose title matches (null: any)
    # Deny pointer and typing actions at points where no accessibility tree says what the widget
    # is (Tk and bare X apps), since deny_text and near_label cannot see inside such windows.
    require_accessibility: bool = False  # refuse pointer and typing actions where no accessibility tree names the widget


class Limits(_Strict):
    max_steps: int | None = Field(default=None, ge=1)  # desktop steps; the smaller of this and --max-steps wins
    max_pages: int | None = Field(default=None, ge=1)  # pages a review reads per document
    max_prompt_tokens: int | None = Field(default=None, ge=1)  # prompt tokens per request
    max_runtime_s: float | None = Field(default=None, gt=0)  # seconds per run; the smaller of this and --max-runtime wins


LIMIT_NAMES: tuple[str, ...] = tuple(Limits.model_fields)


def parse_page_scope(scope: str) -> list[tuple[int, int | None]]:
    """``"all"``, ``"3"``, ``"1-3"``, ``"5-"`` or a comma list of those -> inclusive ranges (None = last page)."""
    text = str(scope).strip().lower()
    if text == "all":
        return [(1, None)]
    ranges: list[tuple[int, int | None]] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            start = int(lo)
            end = (int(hi) if hi.strip() else None) if sep else start
        except ValueError:
            raise ValueError(f"pages {scope!r}: use 'all', '3', '1-3', '5-' or a comma list like '1,4-6'") from None
        if start < 1 or (end is not None and end < start):
            raise ValueError(f"pages {scope!r}: pages start at 1 and ranges must not run backwards")
        ranges.append((start, end))
    return ranges


def _vet_scope(scope: str | int) -> str:
    parse_page_scope(str(scope))
    return str(scope)


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _words(value: str) -> str:
    if not value.strip():
        raise ValueError("a position must state something (it is empty)")
    return value.strip()


PositionText = Annotated[str, AfterValidator(_words)]


class Positions(_Strict):
    """A playbook's positions on a clause: what it should say, what is still acceptable, when to escalate.

    The model classifies each relevant clause against them (green: the standard; amber: a fallback;
    red: the escalation point, or outside both), and ``standard`` is the wording a Word export
    proposes as a tracked change.
    """

    standard: PositionText  # what the clause should say (green)
    fallback: Annotated[list[PositionText], BeforeValidator(_one_or_more)] = []  # still acceptable (amber): one or a list
    escalate: PositionText | None = None  # the escalation point (red)


class Check(_Strict):
    """A deterministic document check: no model involved (its ``positions``, if any, go to the model)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]  # a later check with this id replaces it
    description: str  # what the check wants, in the findings and the prompt
    severity: Severity = "medium"  # of its findings
    pages: Annotated[str, BeforeValidator(_vet_scope)] = "all"  # which pages it reads
    type: Literal["forbidden", "required", "pii"]  # forbidden: pattern must not occur; required: must occur; pii: detectors
    pattern: RulePattern | None = None  # for forbidden and required
    detectors: list[PiiDetector] | None = None  # for pii (null: all); iban mod-97 and credit_card Luhn checked
    positions: Positions | None = None  # playbook positions (standard, fallback, escalate) for the model
    title: str | None = None  # what the clause is called, for people: "governing-law clause" (default: from the id)

    @model_validator(mode="after")
    def _fields_for_type(self) -> "Check":
        if self.type in ("forbidden", "required") and self.pattern is None:
            raise ValueError(f"check {self.id!r} of type {self.type} needs a 'pattern'")
        if self.type == "pii" and self.pattern is not None:
            raise ValueError(f"check {self.id!r} of type pii takes 'detectors', not 'pattern'")
        if self.type != "pii" and self.detectors is not None:
            raise ValueError(f"check {self.id!r}: 'detectors' only applies to type pii")
        return self

    def clause_name(self) -> str:
        """``title``, or the id read as words: ``governing-law-clause`` -> ``governing-law clause``."""
        if self.title:
            return self.title
        words = self.id.split("-")
        return "-".join(words[:-1]) + " clause" if len(words) > 1 and words[-1] == "clause" else " ".join(words)


class OutputPolicy(_Strict):
    fields: list[Literal["rule", "severity", "page", "quote", "bbox", "rationale", "suggestion"]] = []  # extra answer fields; files add up
    language: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None = None  # e.g. en, de-CH; the last wins


class RuleFrontMatter(_Strict):
    applies_to: list[AgentName] | None = None  # the agents this file is for (null: every agent)
    tools: ToolsPolicy = ToolsPolicy()  # which tools the agent may use
    actions: ActionsPolicy = ActionsPolicy()  # what the desktop guard allows, asks about or denies
    limits: Limits = Limits()  # the smaller value of all files wins
    checks: list[Check] = []  # deterministic document checks on the text layer, no model
    output: OutputPolicy = OutputPolicy()  # the findings' extra fields and language
