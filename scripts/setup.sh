#!/bin/sh
# Setup shared by `npm start` and `npm test`: installs the Node dependencies
# (Node 24 itself comes from the npm registry as a dev dependency) when the
# lockfile changed, and the Synapse chroot when it is missing. Both are no-ops
# on a machine that already has them.
set -eu
cd "$(dirname "$0")/.."

STAMP=node_modules/.switchboard-lock-hash
WANT="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -x node_modules/.bin/node ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "setup: installing Node dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$WANT" > "$STAMP"
fi

sh synapse/install.sh
