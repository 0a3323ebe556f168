"""Turn ``--model`` / ``--base-url`` into a ready ``ChatClient``, and say when its words are noise.

With ``--base-url`` (repeatable; env ``TILEPILOT_BASE_URL``), the given servers are used as they
are. Without it, the managed local server for the profile is used, and for ``--model tiny`` it is
built and started on demand and then reused by later commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from tilepilot.model_runtime import server, tiny
from tilepilot.model_runtime.client import ChatClient
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
    """Reuse the profile's running managed server, or build what it needs and start it.

    ``api_key``: the key the server requires, or is to require (never on its command line)."""
    # A running llama-server for the profile (`serve start --engine llama.cpp`) serves as well as vLLM.
    for name in (profile.name, server.state_name(profile.name, "llama.cpp")):
        state = server.read_state(name)
        if state is not None and server.serves(state, api_key):
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


def api_key_from(option: str | None = None) -> str | None:
    """``--api-key`` or env ``TILEPILOT_API_KEY``: the bearer key for the model server."""
    return option or os.environ.get("TILEPILOT_API_KEY") or None


def served_name_from(option: str | None = None) -> str | None:
    """``--served-name`` or env ``TILEPILOT_SERVED_NAME``: the id to ask a server for, when it serves several."""
    return option or os.environ.get("TILEPILOT_SERVED_NAME") or None


def connect(model: str, base_url: list[str] | None = None, api_key: str | None = None, quiet: bool = False,
            served_name: str | None = None) -> ChatClient:
    """A probed client (one-line error if a server is down); close it, or use it as a context manager.

    The run that uses it logs the probe's findings: pass it to ``Run.open(client=...)`` (or ``run.attach_client``).
    """
    profile = get_profile(model)
    urls = base_urls_from(base_url)
    api_key = api_key_from(api_key)
    if not urls:
        urls = [ensure_local_server(profile, quiet=quiet, api_key=api_key).base_url]
    client = ChatClient(urls, profile, api_key=api_key, served_name=served_name_from(served_name))
    try:
        client.check()
    except BaseException:
        client.close()
        raise
    return client

