#!/usr/bin/env bash
# Set up everything synspill needs, idempotently: a virtual environment in .venv with
# the package and its dependencies (via uv, fetched from PyPI), plus ffmpeg and
# mosquitto and chromium from Debian when we are root (used by `watch` tests and streams).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: synspill needs Python >= 3.11; install it (e.g. apt-get install python3.11)" >&2; exit 1; }

# System tools: ffmpeg (streams, video), mosquitto (MQTT sink tests) and chromium (the
# dashboard's browser tests). Optional for users.
need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing ${need_apt[*]} (apt)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null 2>&1 \
      || echo "[setup] warning: could not install ${need_apt[*]}; tests that need them are skipped" >&2
  else
    echo "[setup] note: ${need_apt[*]} not found; install them for stream and MQTT features" >&2
  fi
fi

# Byte-code is compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on many CI
# machines), Python would otherwise re-compile torch & co. on every start (import 6.8 s -> 2.6 s,
# `synspill --help` 0.9 s -> 0.4 s, measured on the 2-core machine).
compile_own() { PYTHONDONTWRITEBYTECODE= .venv/bin/python -m compileall -q synspill >/dev/null 2>&1 || true; }
stamp=.venv/.synspill-deps
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  compile_own
  exit 0
fi
echo "[setup] creating .venv and installing dependencies (first run: a few minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check uv
.venv/bin/python -m uv pip install --python .venv/bin/python -q --compile-bytecode -e ".[dev]"
compile_own
echo "$want" > "$stamp"
