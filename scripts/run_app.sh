#!/usr/bin/env bash
# Set up and run the demo app: bash scripts/run_app.sh [app.py arguments, e.g. --checkpoint PATH]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python -m pip install -r requirements.txt

if command -v npm >/dev/null 2>&1 && [ -f web/package-lock.json ]; then
  npm ci --prefix web
fi

exec python app.py "$@"
