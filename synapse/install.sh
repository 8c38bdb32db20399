#!/bin/sh
# Installs Synapse into a Debian chroot that serves as a cache outside the
# repository. Debian 12 has no Synapse package, Debian unstable does; the
# chroot keeps it away from the host's Python. Idempotent: a finished chroot
# carries a marker file and is reused.
#
# Usage: synapse/install.sh [DIR]   (default: $SWITCHBOARD_SYNAPSE_DIR or
#        /var/cache/switchboard/synapse-chroot-v1)
set -eu

DIR="${1:-${SWITCHBOARD_SYNAPSE_DIR:-/var/cache/switchboard/synapse-chroot-v1}}"
MARKER="$DIR/.switchboard-ready"
MIRROR="${SWITCHBOARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -f "$MARKER" ]; then
  echo "synapse: using cached chroot $DIR ($(cat "$MARKER"))"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "synapse: installing the chroot needs root (debootstrap, chroot)" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# A half-built chroot from an interrupted run is not trusted: start over.
rm -rf "$DIR.partial"
mkdir -p "$(dirname "$DIR")"
echo "synapse: debootstrap into $DIR.partial (about a minute)"
debootstrap --variant=minbase sid "$DIR.partial" "$MIRROR" >/dev/null
# debootstrap's --include cannot resolve virtual packages; install afterwards.
chroot "$DIR.partial" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends matrix-synapse python3-psycopg2 ca-certificates >/dev/null'
# The Debian package's service scripts are not used; apt lists are not needed.
chroot "$DIR.partial" sh -c 'apt-get clean; rm -rf /var/lib/apt/lists/*'
VERSION="$(chroot "$DIR.partial" python3 -c 'import synapse; print(synapse.__version__)')"
rm -rf "$DIR"
mv "$DIR.partial" "$DIR"
echo "synapse $VERSION" > "$MARKER"
echo "synapse: installed Synapse $VERSION in $DIR"
