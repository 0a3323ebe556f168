"""Turn ``--model`` / ``--base-url`` into a ready ``ChatClient``, and say when its words are noise.

With ``--base-url`` (repeatable; env ``TILEPILOT_BASE_URL``), the given servers are used as they
are. Without it, the managed local server for the profile is used, and for ``--model tiny`` it is
built and started on demand and then reused by later commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from rich.console import Console

from tilepilot.model_runtime import server, tiny
from tilepilot.model_runtime.client import ChatClient
from tilepilot.agents.errors import RunError
from tilepilot.model_runtime.errors import CheckpointBuildError
from tilepilot.model_runtime.profiles import ModelProfile, get_profile

_err = Console(stderr=True)

# The one wording of the warning every agent shows when the tiny random-weight model answered.
RANDOM_WEIGHTS_NOTE = "tiny random-weight model: its words are noise (a pipeline demo, not a real answer)"


def random_weights_note(profile: ModelProfile) -> str | None:
    """The note to show next to model output, or None for a real model."""
    return RANDOM_WEIGHTS_NOTE if profile.is_random_weights else None


def ensure_tiny_checkpoint(path: Path | None = None, seed: int = tiny.DEFAULT_SEED, force: bool = False) -> Path:
    """Build the tiny checkpoint in a child process (model code needs the serving environment)."""
    target = Path(path) if path else tiny.default_checkpoint_dir(seed)
    if tiny.is_complete(target) and not force:
        return target
    cmd = [sys.executable, "-m", "tilepilot.model_runtime.tiny", "--out", str(target), "--seed", str(seed)]
    if force:
        cmd.append("--force")
    with _err.status(f"building the tiny random-weight checkpoint in {target} ..."):
        proc = subprocess.run(cmd, env=server.serving_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise CheckpointBuildError(f"building the tiny checkpoint failed: {last}")
    return target


def ensure_local_server(profile: ModelProfile, quiet: bool = False, *, host: str = "127.0.0.1",
                        port: int | None = None, api_key: str | None = None) -> server.ServerState:
    """Reuse the profile's running managed server, or build what it needs and start it."""
    state = server.read_state(profile.name)
    if state is not None and server.healthy(state.base_url, state.served_name):
        return state
    server.check_backend(profile)
    if profile.is_random_weights:
        ensure_tiny_checkpoint(Path(profile.model))
    if quiet:
        return server.start(profile, host=host, port=port, api_key=api_key)
    with _err.status(f"starting vLLM for {profile.name} (first start takes about a minute) ...") as status:

        def progress(elapsed: float, line: str) -> None:
            status.update(f"starting vLLM for {profile.name}: {elapsed:.0f} s  {line[-80:]}")

        return server.start(profile, host=host, port=port, api_key=api_key, on_wait=progress)


def base_urls_from(option: list[str] | None) -> list[str]:
    if option:
        return [u for item in option for u in item.split(",") if u.strip()]
    env = os.environ.get("TILEPILOT_BASE_URL", "")
    return [u for u in env.replace(",", " ").split() if u]


def served_name_from(option: str | None = None) -> str | None:
    """``--served-name`` or env ``TILEPILOT_SERVED_NAME``: the id to ask a server for, when it serves several."""
    return option or os.environ.get("TILEPILOT_SERVED_NAME") or None


def connect(model: str, base_url: list[str] | None = None, api_key: str | None = None, quiet: bool = False,
            served_name: str | None = None) -> ChatClient:
    """A probed client (one-line error if a server is down); close it, or use it as a context manager.

    The probe's findings go into the events of the next run this thread opens (see :func:`_log_into_run`).
    """
    profile = get_profile(model)
    urls = base_urls_from(base_url)
    api_key = api_key or os.environ.get("TILEPILOT_API_KEY")
    if not urls:
        urls = [ensure_local_server(profile, quiet=quiet).base_url]
    client = ChatClient(urls, profile, api_key=api_key, served_name=served_name_from(served_name))
    try:
        client.check()
    except BaseException:
        client.close()
        raise
    pending = [ref for ref in getattr(_connected, "clients", []) if (c := ref()) is not None and not c.closed]
    _connected.clients = [*pending, weakref.ref(client)]
    return client


# Clients connected by this thread that no run has taken yet: every agent connects, then opens its
# Run in the same thread, so the run that opens next is theirs.
_connected = threading.local()


def _log_into_run(run: Any) -> None:
    """Run-open hook: log each pending client's probe as ``server_probe`` and send it later findings."""
    pending, _connected.clients = getattr(_connected, "clients", []), []
    for ref in pending:
        client = ref()
        if client is None or client.closed or client.capabilities is None:
            continue  # a client already done with (ask, or a failed start) belongs to no run
        run.emit("server_probe", exact=client.capabilities.exact, **client.capabilities.model_dump(mode="json"))

        def sink(kind: str, _run: Any = run, **fields: Any) -> None:
            if _run.finished is None:  # a client that outlives its run logs nowhere
                try:
                    _run.emit(kind, **fields)
                except RunError:  # the log closed without a finish (a killed run's cleanup)
                    pass

        client.on_event = sink


def _register_run_hook() -> None:
    from tilepilot.agents.runs import OPEN_HOOKS

    if _log_into_run not in OPEN_HOOKS:
        OPEN_HOOKS.append(_log_into_run)


_register_run_hook()
