#!/usr/bin/env bash
# test/lib/node18.sh: run a command with Debian 12's own Node.js 18 first on
# PATH, without installing it system-wide, to check that the Node suites pass
# on what a fresh Debian 12 has (issue 7, item 12).
#
#   bash test/lib/node18.sh make test-protocol test-browser
#
# The packages (nodejs 18.20 and the libnode108 it links, plus the three
# node-* packages libnode reads by absolute path under /usr/share/nodejs) are
# fetched with `apt-get download` and unpacked with `dpkg -x` into
# _build/node18/root.  The command runs in a private mount namespace where
# /usr/share is overlaid with the unpacked /usr/share, so nothing outside
# _build/ changes.  Needs root (unshare -m, mount) and Debian 12's apt sources.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
N18="$ROOT/_build/node18"
R="$N18/root"
PKGS=(nodejs libnode108 node-cjs-module-lexer node-undici node-acorn)

if [ ! -x "$R/usr/bin/node" ]; then
  mkdir -p "$N18/debs"
  ver="$(apt-cache madison nodejs | awk '$3 ~ /^18\./ {print $3; exit}')"
  [ -n "$ver" ] || { echo "node18: no nodejs 18 in the apt sources (apt-get update?)" >&2; exit 1; }
  (cd "$N18/debs" && apt-get download "nodejs=$ver" "${PKGS[@]:1}" 2>/dev/null)
  for d in "$N18"/debs/*.deb; do dpkg -x "$d" "$R"; done
fi
[ $# -gt 0 ] || set -- node --version
exec unshare -m bash -c '
  mount -t overlay overlay -o "lowerdir=$0/usr/share:/usr/share" /usr/share
  export PATH="$0/usr/bin:$PATH" LD_LIBRARY_PATH="$0/usr/lib/x86_64-linux-gnu"
  echo "node18: $(command -v node) $(node --version)" >&2
  exec "$@"' "$R" "$@"
