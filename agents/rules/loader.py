"""Parse one rule file: YAML front matter (strictly validated) plus a Markdown body.

Every problem is reported as ``file:line: message`` where *line* is a line of the file itself
(the front matter starts after the opening ``---``), so an editor can jump to it. YAML goes
through ``SafeLoader`` only: a tag that would build a Python object is an error, and a rule file
never runs code. Duplicate keys are errors too, because YAML would otherwise silently keep the
last one and a rule would quietly never apply.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from tilepilot.agents.errors import RuleProblemsError
from tilepilot.agents.rules.schema import RuleFrontMatter

MAX_RULE_FILE_BYTES = 256 * 1024
_FENCE = "---"


@dataclass(frozen=True)
class RuleFile:
    """One parsed, valid rule file. ``key_lines`` maps keys such as ``actions.deny_regions[0]`` to lines."""

    path: str
    front: RuleFrontMatter
    body: str
    body_line: int
    key_lines: dict[str, int] = field(default_factory=dict)
    has_front_matter: bool = False

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key)


def load_rule_file(path: str | Path, *, text: str | None = None) -> RuleFile:
    """Read and validate ``path``; raises :class:`RuleProblemsError` listing every problem found."""
    display = str(path)
    if text is None:
        text = _read(Path(path), display)
    front_text, offset, body, body_line = _split_front_matter(text, display)
    if front_text is None:
        return RuleFile(display, RuleFrontMatter(), body, body_line)
    root = _compose(front_text, offset, display)
    data = _construct(front_text, offset, display)
    if data is None:
        return RuleFile(display, RuleFrontMatter(), body, body_line, has_front_matter=True)
    if not isinstance(data, dict):
        raise RuleProblemsError([(display, offset + 1, "front matter must be a mapping of keys (applies_to, tools, actions, limits, checks, output)")])
    try:
        front = RuleFrontMatter.model_validate(data)
    except ValidationError as err:
        raise RuleProblemsError(_problems_from(err, root, offset, display)) from None
    key_lines = _key_lines(root, offset)
    _reject_duplicate_check_ids(front, key_lines, display)
    return RuleFile(display, front, body, body_line, key_lines, has_front_matter=True)


def _reject_duplicate_check_ids(front: RuleFrontMatter, key_lines: dict[str, int], display: str) -> None:
    # Checks merge by id across files; within one file a repeated id would silently drop one.
    seen: set[str] = set()
    problems = []
    for index, check in enumerate(front.checks):
        if check.id in seen:
            line = key_lines.get(f"checks[{index}].id", key_lines.get(f"checks[{index}]", 0))
            problems.append((display, line, f"check id {check.id!r} is used twice in this file: ids must be unique"))
        seen.add(check.id)
    if problems:
        raise RuleProblemsError(problems)


def _read(path: Path, display: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RuleProblemsError([(display, 0, "no such rule file: check the path")]) from None
    except IsADirectoryError:
        raise RuleProblemsError([(display, 0, "is a folder, not a rule file")]) from None
    except OSError as err:
        raise RuleProblemsError([(display, 0, f"cannot read rule file: {err.strerror}")]) from None
    if len(raw) > MAX_RULE_FILE_BYTES:
        raise RuleProblemsError([(display, 0, f"rule file is {len(raw)} bytes; the limit is {MAX_RULE_FILE_BYTES}: split it")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise RuleProblemsError([(display, line, "rule file is not UTF-8 text: re-save it as UTF-8")]) from None


def _split_front_matter(text: str, display: str) -> tuple[str | None, int, str, int]:
    """-> (front matter text or None, line offset of its first line minus one, body, body's first line)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != _FENCE:
        return None, 0, text, 1
    for index in range(1, len(lines)):
        if lines[index].rstrip() in (_FENCE, "..."):
            return "".join(lines[1:index]), 1, "".join(lines[index + 1 :]), index + 2
    raise RuleProblemsError([(display, 1, "front matter opened with '---' is never closed: add a line '---' after it")])


def _mark_line(err: yaml.YAMLError, offset: int) -> int:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return (mark.line + 1 + offset) if mark is not None else offset + 1


def _yaml_problem(err: yaml.YAMLError) -> str:
    return "invalid YAML: " + " ".join(str(getattr(err, "problem", None) or err).split())


def _reject_aliases(front_text: str, offset: int, display: str) -> None:
    # Anchors and aliases can build cyclic or exponentially large data ("billion laughs");
    # rule files are small and plain, so they are refused outright.
    try:
        for token in yaml.scan(front_text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                line = token.start_mark.line + 1 + offset
                raise RuleProblemsError([(display, line, "YAML anchors and aliases (&name, *name) are not allowed in rule files: write the value out")])
    except yaml.YAMLError as err:
        raise RuleProblemsError([(display, _mark_line(err, offset), _yaml_problem(err))]) from None


def _compose(front_text: str, offset: int, display: str) -> yaml.Node | None:
    _reject_aliases(front_text, offset, display)
    try:
        root = yaml.compose(front_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise RuleProblemsError([(display, _mark_line(err, offset), _yaml_problem(err))]) from None
    problems: list[tuple[str, int, str]] = []
    _find_duplicate_keys(root, "", offset, display, problems)
    if problems:
        raise RuleProblemsError(problems)
    return root


def _construct(front_text: str, offset: int, display: str) -> object:
    try:
        return yaml.load(front_text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader: never builds objects
    except yaml.constructor.ConstructorError as err:
        found = re.search(r"tag '([^']+)'", err.problem or "")
        tag = f" {found.group(1).replace('tag:yaml.org,2002:', '!!')}" if found else ""
        message = f"YAML tag{tag} is not allowed: rule files hold plain data only, remove the tag"
        raise RuleProblemsError([(display, _mark_line(err, offset), message)]) from None
    except yaml.YAMLError as err:
        raise RuleProblemsError([(display, _mark_line(err, offset), _yaml_problem(err))]) from None


def _find_duplicate_keys(node: yaml.Node | None, where: str, offset: int, display: str, out: list) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = getattr(key, "value", "?")
            if name in seen:
                out.append((display, key.start_mark.line + 1 + offset, f"key {where}{name!s} appears twice: merge the two entries"))
            seen.add(name)
            _find_duplicate_keys(value, f"{where}{name}.", offset, display, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicate_keys(item, f"{where.rstrip('.')}[{index}].", offset, display, out)


def _key_lines(root: yaml.Node | None, offset: int) -> dict[str, int]:
    """Dotted key -> file line for every mapping key and sequence item, e.g. ``checks[1].pattern``."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines[name] = key.start_mark.line + 1 + offset
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                name = f"{prefix}[{index}]"
                lines[name] = item.start_mark.line + 1 + offset
                walk(item, name)

    if root is not None:
        walk(root, "")
    return lines


def _locate(root: yaml.Node | None, loc: tuple) -> tuple[int | None, str]:
    """Follow a pydantic error location through the YAML node tree -> (0-based line, dotted key)."""
    node, line, parts = root, (root.start_mark.line if root is not None else None), []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(getattr(k, "value", "")) == str(part)), None)
            if match is None:
                continue  # a pydantic-internal location part (e.g. a union member name): skip it
            line, node = match[0].start_mark.line, match[1]
            parts.append(f".{part}" if parts else str(part))
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
            parts.append(f"[{part}]")
    return line, "".join(parts)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema model that owns the last key of ``loc`` (used to suggest valid keys)."""
    current: object = RuleFrontMatter
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            break
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: object) -> object:
    for _ in range(6):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (list, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if args else tp
        else:
            break
    return tp


def _problems_from(err: ValidationError, root: yaml.Node | None, offset: int, display: str) -> list[tuple[str, int, str]]:
    problems: list[tuple[str, int, str]] = []
    for item in err.errors(include_url=False):
        loc = tuple(item["loc"])
        line, key = _locate(root, loc)
        file_line = (line + 1 + offset) if line is not None else offset + 1
        if item["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = list(owner.model_fields) if owner else []
            bad = str(loc[-1])
            hint = difflib.get_close_matches(bad, allowed, n=1)
            maybe = f"; did you mean {hint[0]!r}?" if hint else ""
            message = f"unknown key {key or bad!r}{maybe} (allowed here: {', '.join(allowed)})"
        else:
            text = str(item["msg"]).removeprefix("Value error, ")
            got = item.get("input")
            shown = f" (got {got!r})" if item["type"] not in ("value_error", "missing") and not isinstance(got, (dict, list)) else ""
            message = f"{key}: {text}{shown}" if key else text
        problems.append((display, file_line, message))
    return sorted(problems, key=lambda problem: problem[1])
