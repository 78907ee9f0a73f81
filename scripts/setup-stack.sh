#!/usr/bin/env bash
# Set up the native observability stack used by tests/stack (and usable by hand):
#   * Debian's `prometheus` package (prometheus + promtool), apt-installed when missing,
#     with the Debian service stopped/disabled so it never holds port 9090;
#   * Jaeger v2 built from the Go module proxy through the committed wrapper module
#     collector/jaeger-build (go.mod/go.sum pin every module by checksum).
#
# Idempotent: a second run only checks and prints the binary paths. The Jaeger binary is
# cached in ${XDG_CACHE_HOME:-$HOME/.cache}/agentwatch/otelstack/<pin>/jaeger, where <pin> is
# jaeger-<version of the jaeger requirement in collector/jaeger-build/go.mod>-<first 12 hex of
# sha256(go.mod + go.sum)> (tests/stack/_paths.py mirrors this logic). Nothing downloads a binary: Go builds from module sources, apt installs
# Debian's package.
#
# Usage: scripts/setup-stack.sh [--no-apt] [--rebuild]
#   --no-apt    never call apt-get (fail if prometheus/promtool are missing)
#   --rebuild   rebuild Jaeger even if the cached binary exists
# Environment: AGENTWATCH_OTELSTACK_CACHE overrides the cache root
#   (default ${XDG_CACHE_HOME:-$HOME/.cache}/agentwatch/otelstack).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wrapper="$repo_root/collector/jaeger-build"
. "$repo_root/scripts/_progress.sh"

use_apt=1
rebuild=0
for arg in "$@"; do
  case "$arg" in
    --no-apt) use_apt=0 ;;
    --rebuild) rebuild=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "setup-stack.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "setup-stack: $*" >&2; }
sudo=""

# ---------------------------------------------------------------- prometheus / promtool
find_prom_bin() {  # $1 = prometheus|promtool
  local p
  if p=$(command -v "$1" 2>/dev/null); then echo "$p"; return 0; fi
  if [ -x "/usr/bin/$1" ]; then echo "/usr/bin/$1"; return 0; fi
  return 1
}

stop_debian_prometheus_service() {
  # The Debian package enables and starts prometheus.service (port 9090) and
  # prometheus-node-exporter; the tests start their own Prometheus on free ports.
  local svc
  for svc in prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1; then
      if [ -d /run/systemd/system ]; then $sudo systemctl stop "$svc" >/dev/null 2>&1 || true; fi
      # works offline too (no running systemd): removes the multi-user.target.wants link
      $sudo systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
    if [ ! -d /run/systemd/system ] && [ -x "/etc/init.d/$svc" ]; then
      $sudo "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
}

if ! find_prom_bin prometheus >/dev/null || ! find_prom_bin promtool >/dev/null; then
  if [ "$use_apt" -ne 1 ]; then
    log "prometheus/promtool missing and --no-apt given"; exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      log "prometheus/promtool missing; run as root or install Debian's 'prometheus' package"; exit 1
    fi
  fi
  log "installing Debian's prometheus package (apt)"
  # policy-rc.d exit 101 = "do not start services from maintainer scripts", so the package's
  # postinst cannot start prometheus on :9090 where no systemd is running (containers, CI).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    created_policy=1
  fi
  cleanup_policy() { if [ "$created_policy" -eq 1 ]; then $sudo rm -f "$policy"; fi; }
  trap cleanup_policy EXIT
  with_progress "apt-get update" $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  with_progress "apt-get install prometheus" $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2
  cleanup_policy; created_policy=0; trap - EXIT
  stop_debian_prometheus_service
fi
prometheus_bin=$(find_prom_bin prometheus)
promtool_bin=$(find_prom_bin promtool)

# ---------------------------------------------------------------- jaeger
# Same rule as tests/stack/_paths.py: the version of the github.com/jaegertracing/jaeger requirement.
jaeger_version=$(sed -nE 's#^[[:space:]]*(require[[:space:]]+)?github\.com/jaegertracing/jaeger[[:space:]]+([^[:space:]]+).*#\2#p' "$wrapper/go.mod" | head -n 1)
if [ -z "$jaeger_version" ]; then
  log "cannot find the github.com/jaegertracing/jaeger requirement in $wrapper/go.mod"; exit 1
fi
# The pin names the cache directory: the version plus a digest of go.mod+go.sum, so any change to
# the wrapper module (a replace, a checksum) builds a fresh binary instead of reusing a stale one.
digest=$(cat "$wrapper/go.mod" "$wrapper/go.sum" | sha256sum | cut -c1-12)
pin="jaeger-$jaeger_version-$digest"
cache_root="${AGENTWATCH_OTELSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentwatch/otelstack}"
bin_dir="$cache_root/$pin"
jaeger_bin="$bin_dir/jaeger"

if [ "$rebuild" -eq 1 ] || [ ! -x "$jaeger_bin" ]; then
  if ! command -v go >/dev/null 2>&1; then
    log "Go is required to build Jaeger ($pin) from the Go module proxy; install Go >= 1.26"; exit 1
  fi
  mkdir -p "$bin_dir"
  # Jaeger v2 is released from the same Go module as v1 (github.com/jaegertracing/jaeger), whose
  # versions stay v1.x: v1.76.0 is Jaeger v2.13.0.
  log "building Jaeger v2 (Go module version $jaeger_version) from the Go module proxy into $bin_dir (cold: ~7 min on 2 cores with empty Go caches, ~3 GB of Go caches)"
  start=$(date +%s)
  tmp="$bin_dir/jaeger.tmp.$$"
  (
    cd "$wrapper"
    # GOTOOLCHAIN=local: never download a Go toolchain. -mod=readonly: go.mod/go.sum are the pin;
    # a build that would need to change them fails instead of resolving something new.
    GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=readonly" CGO_ENABLED=0 \
      with_progress "go build (Jaeger)" go build -o "$tmp" \
      -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$jaeger_version" \
      github.com/jaegertracing/jaeger/cmd/jaeger
  )
  mv -f "$tmp" "$jaeger_bin"
  log "built $jaeger_bin in $(( $(date +%s) - start ))s"
fi

echo "PROMETHEUS=$prometheus_bin"
echo "PROMTOOL=$promtool_bin"
echo "JAEGER=$jaeger_bin"
