#!/usr/bin/env bash
# Set up (cached) and run the whole test suite: unit, integration (real vLLM CPU server, Xvfb/Xorg,
# real PDFs and audio) and the slow tier. Extra arguments go to pytest. Skipped tests are listed
# with their reasons (-rs); with CI=true, a skip for a missing system part fails the run. The ten
# slowest tests are printed at the end, so a change that breaks the time budget shows where.
#
#   bash tests/run.sh --fast     unit tests only (no model server, no X server, nothing marked slow): for development
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup-env.sh
if [ "${1:-}" = "--fast" ]; then
  shift
  export TILEPILOT_FAST=1  # tests/conftest.py leaves out every test that needs a server or an X screen
fi
exec "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider --durations=10 tests "$@"
