"""A real memory cap for tests: a cgroup v1 memory group that the test's processes run in.

``with MemoryCap("name", 1600 * MiB) as cap: subprocess.Popen(cmd, preexec_fn=cap.enter)`` puts a child
(and everything it starts) under the limit. On leaving, every process still in the group is killed and
the group removed, also when the test failed. ``oom_kills`` and ``failcnt`` are the kernel's counters.

The group's usage (``max_usage``) counts page cache too: the files the run reads and writes, and llama-server's
memory-mapped GGUF. The kernel reclaims that cache at the limit (each time ``failcnt`` counts one), so the
processes' own memory is sampled as well: ``peak_rss`` (anonymous memory, ``memory.stat`` total_rss) and
``peak_rss_and_mapped`` (plus the mapped file pages, the model weights among them), and each process's
VmHWM in ``peak_by_process``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/memory")


def cgroup_v1_available() -> bool:
    return os.geteuid() == 0 and (ROOT / "memory.limit_in_bytes").is_file() and os.access(ROOT, os.W_OK)


class MemoryCap:
    def __init__(self, name: str, limit_bytes: int) -> None:
        self.path = ROOT / f"tilepilot-{name}-{os.getpid()}"
        self.limit_bytes = limit_bytes
        self.peak_rss = self.peak_rss_and_mapped = 0
        self.peak_by_process: dict[str, int] = {}  # VmHWM by the first words of each command line
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "MemoryCap":
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                stat = dict(line.split() for line in self._read("memory.stat").splitlines())
            except OSError:  # the group is being removed
                return
            for pid in self._read("cgroup.procs").split():
                try:
                    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:  # ended meanwhile
                    continue
                name = " ".join(part.decode(errors="replace").rsplit("/", 1)[-1] for part in command[:4])
                hwm = int(status.get("VmHWM", "0 kB").split()[0]) * 1024
                self.peak_by_process[name] = max(self.peak_by_process.get(name, 0), hwm)
            rss = int(stat["total_rss"])
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_rss_and_mapped = max(self.peak_rss_and_mapped, rss + int(stat["total_mapped_file"]))

    def enter(self) -> None:
        """For ``preexec_fn``: move the calling (child) process into the group before it execs."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    @property
    def oom_kills(self) -> int:
        fields = dict(line.split() for line in self._read("memory.oom_control").splitlines())
        return int(fields.get("oom_kill", 0))

    @property
    def failcnt(self) -> int:
        return int(self._read("memory.failcnt"))

    @property
    def max_usage(self) -> int:
        return int(self._read("memory.max_usage_in_bytes"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        for _ in range(50):
            pids = [int(p) for p in self._read("cgroup.procs").split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for _ in range(50):  # the kernel drops the group once its last task is reaped
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        self.path.rmdir()
