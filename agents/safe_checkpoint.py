"""Read a run's ``checkpoint.sqlite`` without letting it name code: an allowlist of tilepilot's own types.

LangGraph's default serializer rebuilds whatever a msgpack blob names (``module``, ``name``, args)
by importing and calling it, so a run folder from elsewhere (``--resume``, the MCP ``resume``
argument, shared storage) could run ``os.system`` on resume. Its ``allowed_msgpack_modules`` option
blocks other names, but silently: it hands back the raw arguments and the run goes on with state
nobody wrote. Here a blocked name stops the resume instead, with one line
(:class:`CheckpointRefusedError`), before any node runs:

- only the ``null``, ``bytes`` and ``msgpack`` blob kinds tilepilot writes are read (no ``json``
  constructor envelopes, never ``pickle``);
- every constructor a msgpack blob names, nested ones included, must be on the allowlist: the
  agent's own state types plus the few LangGraph and standard-library types its bookkeeping
  writes; a method call must be one LangGraph itself marks safe;
- a resumed run reads every stored checkpoint and pending write once, up front
  (:func:`screen_checkpoint`), so a tampered blob deep in the history cannot wait for later.

The allowlist is the serializer's own: LangGraph's compile-time widening (``with_allowlist``,
from the graph's schemas) is ignored, so what a checkpoint may name is decided here only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde import jsonplus
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from tilepilot.agents.errors import RunError

# What LangGraph's own bookkeeping and the standard types in tilepilot's state write.
BOOKKEEPING_TYPES: frozenset[tuple[str, str]] = frozenset({
    ("langgraph.types", "Send"), ("langgraph.types", "Interrupt"), ("langgraph.types", "Command"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("uuid", "UUID"), ("builtins", "set"), ("builtins", "frozenset"),
    ("collections", "deque"),
})
_READABLE_KINDS = ("null", "bytes", "bytearray", "msgpack")
_CONSTRUCTORS = {jsonplus.EXT_CONSTRUCTOR_SINGLE_ARG, jsonplus.EXT_CONSTRUCTOR_POS_ARGS, jsonplus.EXT_CONSTRUCTOR_KW_ARGS,
                 jsonplus.EXT_PYDANTIC_V1, jsonplus.EXT_PYDANTIC_V2}
_PLAIN_DATA = {jsonplus.EXT_NUMPY_ARRAY}  # rebuilt with numpy.frombuffer: bytes, never a callable
_NESTED = {getattr(jsonplus, "EXT_DELTA_SNAPSHOT", -1)}  # a wrapper around more msgpack


class CheckpointRefusedError(RunError):
    """A checkpoint names a type or callable outside the allowlist (or is not one tilepilot wrote)."""


def type_key(cls: type) -> tuple[str, str]:
    return (cls.__module__, cls.__name__)


class AllowlistSerializer(JsonPlusSerializer):
    """LangGraph's serializer that writes as before but reads only allowlisted constructors, or refuses."""

    def __init__(self, allowed_types: Iterable[type] = (), *, where: str = "checkpoint") -> None:
        self.allowed: frozenset[tuple[str, str]] = BOOKKEEPING_TYPES | {type_key(t) for t in allowed_types}
        self.where = where
        super().__init__(allowed_msgpack_modules=tuple(self.allowed))

    def with_msgpack_allowlist(self, extra_allowlist: Iterable[Any]) -> "AllowlistSerializer":
        return self  # the allowlist is decided here, not widened from the graph's schemas

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, blob = data
        if kind not in _READABLE_KINDS:
            raise self.refusal(f"holds a {kind!r} blob, which tilepilot never writes")
        if kind == "msgpack":
            self.screen(blob)
        return super().loads_typed(data)

    def screen(self, blob: bytes) -> None:
        """Walk ``blob`` without building anything; raise at the first name outside the allowlist."""
        refused: list[str] = []  # ormsgpack turns a hook's exception into a bare ValueError: the name rides here

        def refuse(what: str) -> ValueError:
            refused.append(what)
            return ValueError(what)

        def hook(code: int, data: bytes) -> None:
            if code in _PLAIN_DATA:
                return None
            if code not in _CONSTRUCTORS | _NESTED | {jsonplus.EXT_METHOD_SINGLE_ARG}:
                raise refuse(f"msgpack extension type {code}")
            inner = ormsgpack.unpackb(data, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)
            if code in _NESTED:
                return None
            if not isinstance(inner, (list, tuple)) or len(inner) < 3 or not all(isinstance(p, str) for p in inner[:2]):
                raise refuse("a malformed constructor entry")
            module, name = inner[0], inner[1]
            if code == jsonplus.EXT_METHOD_SINGLE_ARG:
                method = inner[3] if len(inner) > 3 else None
                if (module, name, method) not in lg_msgpack.SAFE_MSGPACK_METHODS:
                    raise refuse(f"{module}.{name}.{method}")
            elif (module, name) not in self.allowed:
                raise refuse(f"{module}.{name}")
            return None

        try:
            ormsgpack.unpackb(blob, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)
        except (ValueError, ormsgpack.MsgpackDecodeError):
            raise self.refusal(f"names {refused[0]}, which is not one of tilepilot's checkpoint types" if refused
                               else "holds a damaged msgpack blob") from None

    def refusal(self, problem: str) -> CheckpointRefusedError:
        return CheckpointRefusedError(f"{self.where}: {problem}; refusing to resume (the run folder was changed or "
                                      "came from elsewhere): start a new run instead")


def screen_checkpoint(conn: sqlite3.Connection, serde: AllowlistSerializer) -> None:
    """Read every stored checkpoint and pending write of the file through ``serde`` (raises on the first bad one)."""
    queries = {"checkpoints": "SELECT type, checkpoint FROM checkpoints", "writes": "SELECT type, value FROM writes"}
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in [t for t in queries if t in tables]:
            for kind, blob in conn.execute(queries[table]):
                serde.loads_typed((kind, blob))
    except sqlite3.DatabaseError:
        raise serde.refusal("is not a checkpoint database tilepilot wrote") from None
