#!/bin/sh
# Setup shared by `npm start` and `npm test`: installs the Node dependencies
# (Node 24 itself comes from the npm registry as a dev dependency) when the
# lockfile changed, and the Synapse chroot when it is missing. `setup.sh test`
# also installs Debian's Chromium for the browser tests (playwright-core drives
# it; playwright's own browser downloads are not reachable here) and
# docker-compose for validating docker-compose.yml. All steps are
# no-ops on a machine that already has what they install.
#
# Usage: scripts/setup.sh [test]
set -eu
MODE="${1:-}"
cd "$(dirname "$0")/.."

STAMP=node_modules/.switchboard-lock-hash
WANT="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -x node_modules/.bin/node ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "setup: installing Node dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$WANT" > "$STAMP"
fi

sh synapse/install.sh

# Only the tests need a browser and docker-compose (which validates
# docker-compose.yml without an engine); `npm start` installs neither.
if [ "$MODE" = test ] && ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the compose tests need docker-compose; install it as root: apt-get install -y docker-compose" >&2
    exit 1
  fi
  echo "setup: installing docker-compose for the compose file tests"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  fi
fi

if [ "$MODE" = test ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the browser tests need /usr/bin/chromium; install it as root: apt-get install -y chromium" >&2
    exit 1
  fi
  echo "setup: installing Chromium for the browser tests (apt-get install chromium)"
  # A fresh machine may have no package lists yet: refresh them only when the install fails.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
