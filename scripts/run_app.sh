#!/usr/bin/env bash
# Set up what is missing or out of date, then run the app: bash scripts/run_app.sh [app.py arguments]
# (e.g. --checkpoint mobile_sam.pt; without it the official weights are downloaded once and verified).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_setup.sh

setup_python requirements.txt
setup_web
exec python app.py "$@"
