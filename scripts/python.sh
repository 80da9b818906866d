#!/usr/bin/env bash
# Prints the path of a Python that has the pinned tools of requirements-dev.txt
# (moto server, cfn-lint). Uses the machine's python3 when it already has exactly
# those versions; otherwise creates .venv and installs them there from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${PYTHON:-python3}

has_pins() {
  "$1" - requirements-dev.txt <<'PY' 2>/dev/null
import importlib.metadata as md, re, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
    if md.version(name) != version:
        sys.exit(1)
import flask, flask_cors, yaml  # moto[server]'s extras
PY
}

if has_pins "$base"; then
  command -v "$base"
  exit 0
fi
if [ ! -x .venv/bin/python ] || ! has_pins .venv/bin/python; then
  echo "installing requirements-dev.txt into .venv" >&2
  "$base" -m venv .venv >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt >&2
fi
echo "$PWD/.venv/bin/python"
