#!/usr/bin/env bash
# Set up and run the whole test suite: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python -m pip install -r requirements-test.txt

# The browser tests use the system Chromium through Playwright (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

if [ -f web/package-lock.json ]; then
  npm ci --prefix web
  npm test --prefix web   # unit tests of the browser modules (node's test runner)
fi

status=0
python -m pytest -q tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$status"
