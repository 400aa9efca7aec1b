# Set-up steps shared by run_app.sh and test.sh (sourced, not run). Each step does its work only
# when what it installs is missing or its inputs changed since the last successful run; it records
# that in .cache/setup/ (ignored by git).

SETUP_STAMPS=".cache/setup"

# stamp_matches NAME KEY: whether step NAME last succeeded with inputs KEY.
stamp_matches() { [ -f "$SETUP_STAMPS/$1" ] && [ "$(cat "$SETUP_STAMPS/$1")" = "$2" ]; }
stamp_write() { mkdir -p "$SETUP_STAMPS" && printf '%s' "$2" > "$SETUP_STAMPS/$1"; }
files_key() { cat "$@" 2>/dev/null | sha256sum | cut -c1-64; }

# Python packages of a requirements file, for the `python` on PATH (a venv, if one is active).
setup_python() {
  local req="$1" key
  key="$(command -v python) $(files_key "$req" requirements.txt)"
  if stamp_matches "pip-$req" "$key"; then return 0; fi
  echo "setup: installing the Python packages of $req"
  python -m pip install -r "$req"
  stamp_write "pip-$req" "$key"
}

# onnxruntime-web for the page, from npm. Optional: without it the page loads the same version
# from the CDN. A working web/node_modules is never deleted: `npm ci` only where there is none.
setup_web() {
  local key
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm not found; the page will load onnxruntime-web from the CDN" >&2
    return 0
  fi
  key="$(files_key web/package-lock.json)"
  if [ -d web/node_modules/onnxruntime-web ] && stamp_matches npm "$key"; then return 0; fi
  if [ -d web/node_modules/onnxruntime-web ]; then
    echo "setup: web/package-lock.json changed; updating web/node_modules"
    npm install --prefix web --no-audit --no-fund || { echo "setup: warning: npm install failed; keeping the existing web/node_modules" >&2; return 0; }
  else
    echo "setup: installing onnxruntime-web into web/node_modules"
    npm ci --prefix web --no-audit --no-fund || { echo "setup: warning: npm ci failed; the page will load onnxruntime-web from the CDN" >&2; return 0; }
  fi
  stamp_write npm "$key"
}
