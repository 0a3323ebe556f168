"""One chat completion from a freshly built llama-server, before the build is cached as good.

A binary compiled for instructions this CPU cannot run (AMX on a VM that lists it but does not grant
its tile state) loads the model fine and dies at the first completion. So this starts the server, waits
for /health, asks for a few tokens, and fails loudly with the server's log tail. Standard library only:
it runs on the system Python during setup.

    python3 .ci/llama_smoke.py BUILD/bin/llama-server MODEL.gguf
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

LIMIT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def smoke(server: str, model: str) -> str:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="llama-smoke-", suffix=".log", delete=False)
    proc = subprocess.Popen([server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", "2048",
                             "-t", "2", "--no-webui"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LIMIT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode} while loading")
            try:
                if request(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server not healthy after {LIMIT_S} s")
            time.sleep(0.5)
        status, body = request(f"{base}/v1/chat/completions", {
            "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0})
        if status != 200:
            raise RuntimeError(f"the first completion failed: HTTP {status} {body[:200]!r}")
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server died after its first completion (exit {proc.returncode})")
        return json.loads(body)["choices"][0]["message"]["content"]
    except (RuntimeError, OSError) as err:
        if proc.poll() is not None and proc.returncode < 0:
            err = RuntimeError(f"{err}; killed by signal {-proc.returncode} (a CPU instruction this machine cannot run?)")
        log.flush()
        tail = open(log.name, errors="replace").read().splitlines()[-25:]
        raise SystemExit(f"llama-server smoke test failed: {err}\n" + "\n".join(tail)) from None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    answer = smoke(sys.argv[1], sys.argv[2])
    print(f"llama-server smoke test: answered {answer!r}")
