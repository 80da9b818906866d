#!/usr/bin/env bash
# Usage: scripts/chromium.sh [--driver]
# Prints the path of a headless-capable Chromium (with --driver: of its chromedriver), for the
# browser tests (tests/browser.rs) and `make screenshots`. Uses HERALD_CHROMIUM / HERALD_CHROMEDRIVER
# when set, else the machine's `chromium` and `chromedriver`; when either is missing, installs
# Debian's (or Ubuntu's) `chromium` and `chromium-driver` packages with apt-get, as root or through
# sudo. Never downloads a browser from elsewhere (npm, pip): a browser comes from the distribution.
set -euo pipefail

want=chromium_path name=chromium
case "${1:-}" in
  "") ;;
  --driver) want=driver_path name=chromedriver ;;
  *) echo "usage: scripts/chromium.sh [--driver]" >&2; exit 2 ;;
esac

# The first of the given commands that runs, as an absolute path.
find_cmd() {
  local c p
  for c in "$@"; do
    if p=$(command -v "$c" 2>/dev/null) && [ -x "$p" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

chromium_path() { if [ -n "${HERALD_CHROMIUM:-}" ]; then echo "$HERALD_CHROMIUM"; else find_cmd chromium chromium-browser; fi; }
driver_path() { if [ -n "${HERALD_CHROMEDRIVER:-}" ]; then echo "$HERALD_CHROMEDRIVER"; else find_cmd chromedriver; fi; }

if ! chromium_path >/dev/null || ! driver_path >/dev/null; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/chromium.sh: no chromium/chromedriver here and no apt-get to install them;" \
      "install Chromium and its chromedriver, or set HERALD_CHROMIUM and HERALD_CHROMEDRIVER" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo --non-interactive)
  else
    echo "scripts/chromium.sh: chromium is missing and this user is not root and has no sudo:" \
      "run 'apt-get install chromium chromium-driver' as root (or set HERALD_CHROMIUM and HERALD_CHROMEDRIVER)" >&2
    exit 1
  fi
  echo "installing Debian's chromium and chromium-driver with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  # A fresh machine (or container) may have no package lists yet.
  if ! { "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q \
    && "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
      chromium chromium-driver; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "scripts/chromium.sh: apt-get could not install chromium and chromium-driver" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

path=$($want) || { echo "scripts/chromium.sh: $name is still missing after the install" >&2; exit 1; }
"$path" --version >/dev/null 2>&1 || { echo "scripts/chromium.sh: $path --version fails" >&2; exit 1; }
echo "$path"
