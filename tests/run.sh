#!/usr/bin/env bash
# Set up (cached) and run the whole test suite: unit, integration (real vLLM CPU server, Xvfb/Xorg,
# real PDFs and audio) and the slow tier. Extra arguments go to pytest. Skipped tests are listed
# with their reasons (-rs); with CI=true, a skip for a missing system part fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup-env.sh
exec "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider tests "$@"
