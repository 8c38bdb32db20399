#!/bin/sh
# Entrypoint of the Synapse and bridge services in docker-compose.yml.
# Switchboard's compose driver (src/provisioning/compose-driver.ts) writes
# the service's files into a volume shared with it; this loop runs the
# service's process once the `ready` marker exists, restarts it when the
# marker changes (new registration, new config: neither can be hot-loaded)
# and keeps it stopped while a `stopped` marker exists (suspension, removal).
#
# Usage: supervise.sh <files dir> <command> [args...]
# SUPERVISE_INTERVAL: seconds between looks at the files (default 3).
set -u
interval="${SUPERVISE_INTERVAL:-3}"
dir="$1"
shift
pid=""
running=""

stop_child() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
    running=""
  fi
}
trap 'stop_child; exit 0' TERM INT

while :; do
  if [ -f "$dir/ready" ] && [ ! -f "$dir/stopped" ]; then
    wanted="$(cat "$dir/ready")"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "supervise: process exited; starting it again" >&2
      pid=""
    fi
    if [ "$wanted" != "$running" ] || [ -z "$pid" ]; then
      stop_child
      echo "supervise: starting $1" >&2
      "$@" &
      pid=$!
      running="$wanted"
    fi
  else
    stop_child
  fi
  sleep "$interval" &
  wait $!
done
