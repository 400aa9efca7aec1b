#!/usr/bin/env bash
# Set up and run the tests: bash scripts/test.sh [--quick] [extra pytest arguments]
#   (default)  the full suite, as CI runs it: Python and browser-module unit tests, the app through
#              its API, and real-Chromium tests of the page.
#   --quick    everything but the real-Chromium tests (no browser needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_setup.sh

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi

setup_python requirements-test.txt
setup_web

if [ "$quick" -eq 0 ] && [ ! -x /usr/bin/chromium ]; then
  # The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: the browser tests need Chromium; installing the Debian package 'chromium' with apt-get${sudo:+ (sudo)}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

if [ -d web/node_modules ]; then
  npm test --prefix web   # unit tests of the browser modules (node's test runner)
fi

markers=()
[ "$quick" -eq 1 ] && markers=(-m "not browser")
status=0
python -m pytest -q tests "${markers[@]}" "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$status"
