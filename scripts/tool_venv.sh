#!/usr/bin/env bash
# Usage: scripts/tool_venv.sh NAME
# Prints the bin directory of .venv/NAME, a virtualenv holding exactly the pinned tools of
# requirements-NAME.txt, creating or updating it from PyPI when they are not there yet.
#   build: cargo-lambda and the zig it cross-compiles with (`make build`)
#   sam:   aws-sam-cli (`make sam-validate`, `sam deploy`)
# Same mechanism as scripts/python.sh, in separate environments: aws-sam-cli pins a newer
# cfn-lint than requirements-dev.txt does, and `make test` must not need cargo-lambda.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/tool_venv.sh NAME (reads requirements-NAME.txt)}
req=requirements-$name.txt
venv=.venv/$name
base=${PYTHON:-python3}
[ -f "$req" ] || { echo "no $req" >&2; exit 2; }

has_pins() {
  "$1" - "$req" <<'PY' 2>/dev/null
import importlib.metadata as md, re, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
    if md.version(name) != version:
        sys.exit(1)
PY
}

if [ ! -x "$venv/bin/python" ] || ! has_pins "$venv/bin/python"; then
  echo "installing $req into $venv" >&2
  mkdir -p .venv
  "$base" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
fi
echo "$PWD/$venv/bin"
