"""What memory a server may use on this machine: a given size, or this process's cgroup limit, else the
available memory; always less headroom for the OS and the agent process."""

from __future__ import annotations

from pathlib import Path

from tilepilot.model_runtime.errors import PlanError

GiB = 1024**3
MiB = 1024**2


def memory_budget(spec: str) -> tuple[int, str]:
    """What the server may use: ``auto`` (the cgroup limit, else the available memory) or a size such as
    ``16GiB``, less headroom for the OS and the agent process."""
    limit = _cgroup_limit() if spec == "auto" else None
    if limit is not None:
        # A group holds only what runs in it (the server and the agents), not the OS: keep room for the agents.
        total, source, headroom = limit, "cgroup limit", max(AGENT_HEADROOM, limit // 10)
    else:
        total, source = (_meminfo("MemAvailable"), "available memory") if spec == "auto" else (parse_size(spec), "given")
        headroom = headroom_for(total)
    return max(0, total - headroom), f"{source} {total / GiB:.1f} GiB less {headroom / GiB:.2f} GiB headroom"


def parse_size(spec: str) -> int:
    units = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": MiB, "mib": MiB, "mb": 10**6,
             "g": GiB, "gib": GiB, "gb": 10**9, "t": 1024**4, "tib": 1024**4, "tb": 10**12}
    text = spec.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise PlanError(f"not a memory size: {spec!r} (for example 16GiB, 8G or auto)") from None
    if unit not in units or value <= 0:
        raise PlanError(f"not a memory size: {spec!r} (for example 16GiB, 8G or auto)")
    return int(value * units[unit])


def _cgroup_limit() -> int | None:
    """This process's own memory limit: its cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            candidates += [f"/sys/fs/cgroup{path}/memory.max", f"/sys/fs/cgroup/unified{path}/memory.max"]
        elif "memory" in controllers.split(","):
            candidates.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    for candidate in candidates:
        try:
            text = Path(candidate).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _meminfo("MemTotal"):  # "max" or a huge number: no limit
            return int(text)
    return None


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise PlanError(f"/proc/meminfo has no {key}")


# An agent process (tilepilot review, desktop or listen) peaks at about 200-300 MiB VmHWM, whatever the input.
AGENT_HEADROOM = 384 * MiB


def headroom_for(memory_bytes: int) -> int:
    """For the OS and the agent process on a whole machine: 10% or 1 GiB, whichever is more."""
    return max(GiB, memory_bytes // 10)
