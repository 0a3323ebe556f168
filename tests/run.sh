#!/usr/bin/env bash
# Set up (cached) and run the whole test suite: unit, integration (real vLLM CPU server, Xvfb/Xorg,
# real PDFs and audio) and the slow tier. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup-env.sh
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
