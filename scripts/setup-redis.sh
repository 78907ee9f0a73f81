#!/usr/bin/env bash
# Install Debian's `redis-server` for the tests that need a real Redis (tests/_redis.py starts
# its own server on a free loopback port, in a temporary directory, and stops it afterwards).
#
# Idempotent: when redis-server is already installed it only prints its path. The package's
# service is never started (policy-rc.d) and is disabled afterwards, so nothing listens on 6379.
#
# Usage: scripts/setup-redis.sh [--no-apt]
#   --no-apt    never call apt-get (fail if redis-server is missing)
set -euo pipefail

use_apt=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) use_apt=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup-redis.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "setup-redis: $*" >&2; }
sudo=""

find_redis() {
  local p
  if p=$(command -v redis-server 2>/dev/null); then echo "$p"; return 0; fi
  if [ -x /usr/bin/redis-server ]; then echo /usr/bin/redis-server; return 0; fi
  return 1
}

if ! find_redis >/dev/null; then
  if [ "$use_apt" -ne 1 ]; then
    log "redis-server missing and --no-apt given"; exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      log "redis-server missing; run as root or install Debian's 'redis-server' package"; exit 1
    fi
  fi
  log "installing Debian's redis-server package (apt)"
  # policy-rc.d exit 101 = "do not start services from maintainer scripts": the package's
  # postinst must not start a Redis on :6379 where no systemd runs (containers, CI).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    created_policy=1
  fi
  cleanup_policy() { if [ "$created_policy" -eq 1 ]; then $sudo rm -f "$policy"; fi; }
  trap cleanup_policy EXIT
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >&2
  cleanup_policy; created_policy=0; trap - EXIT
  if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then $sudo systemctl stop redis-server >/dev/null 2>&1 || true; fi
    $sudo systemctl disable redis-server >/dev/null 2>&1 || true
  fi
  if [ ! -d /run/systemd/system ] && [ -x /etc/init.d/redis-server ]; then
    $sudo /etc/init.d/redis-server stop >/dev/null 2>&1 || true
  fi
fi

echo "REDIS_SERVER=$(find_redis)"
