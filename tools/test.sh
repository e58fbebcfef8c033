#!/usr/bin/env bash
# The whole test suite, including installing what it needs: the package with its test extras
# (cloud SDKs, moto server, the GCS emulator) and Azurite from npm. Safe to run again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
if [ ! -x .tools/azurite/node_modules/.bin/azurite-blob ]; then
  npm install --silent --no-save --no-audit --no-fund --prefix .tools/azurite azurite@3.35.0
fi
export PATH="$root/.tools/azurite/node_modules/.bin:$PATH"
# Two workers: the machines here have two cores; storage servers are shared per worker.
exec python -m pytest -n 2 --dist loadfile "$@"
