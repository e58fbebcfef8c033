#!/usr/bin/env bash
# The whole test suite, including installing what it needs: the package with its test extras
# (cloud SDKs, moto server, the GCS emulator, ruff, mypy) and Azurite from npm. Safe to run again.
# Lint (ruff) and types (mypy, configured in pyproject.toml) run first: any finding fails the run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
python -m ruff check pxlite tests tools
python -m mypy
if [ ! -x .tools/azurite/node_modules/.bin/azurite-blob ]; then
  npm install --silent --no-save --no-audit --no-fund --prefix .tools/azurite azurite@3.35.0
fi
export PATH="$root/.tools/azurite/node_modules/.bin:$PATH"
# strace: tests/test_durability.py proves at syscall level that media files are synced before
# the commit naming them (in CI a missing strace fails that test, never skips it).
if ! command -v strace >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq strace >/dev/null
fi
# chromium: tests/test_html_render.py renders a result's notebook HTML in headless Chromium
# (in CI a missing chromium fails that test, never skips it).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# Two workers: the machines here have two cores; storage servers are shared per worker.
exec python -m pytest -n 2 --dist loadfile "$@"
