#!/usr/bin/env bash
# The quick-start demo: set up (cached), then review a generated 12-page contract offline.
#
# The model is the tiny random-weight gemma4_unified checkpoint served by the real vLLM CPU build:
# its findings' WORDS ARE NOISE (and are labelled so); the deterministic rule-check findings, the
# token budgets, the protocol and the reports are real. The local server keeps running afterwards
# for fast follow-up commands; stop it with `tilepilot serve stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
TILEPILOT_NO_LLAMA=1 source .ci/setup-env.sh  # the demo needs no llama.cpp server (only the tests do)

if [ ! -f examples/review/contract.pdf ]; then
  echo "[demo] generating examples/review/contract.pdf"
  python examples/review/make_contract.py >/dev/null
fi
echo "[demo] building the tiny random-weight checkpoint (cached after the first run)"
tilepilot model build-tiny >/dev/null
echo "[demo] reviewing examples/review/contract.pdf (starts the local vLLM server on first use: about a minute)"
tilepilot review examples/review/contract.pdf --rules examples/review/contract-rules.md
