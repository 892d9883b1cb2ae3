#!/usr/bin/env bash
# The README's test command: set up a fresh machine, then types, lint, format and the whole test suite
# (unit, kernel and namespace-cluster tests; the latter need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run check
