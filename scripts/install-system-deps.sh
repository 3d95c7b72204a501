#!/usr/bin/env bash
# Installs the Debian packages that tests and benchmarks run against (real components,
# never stand-ins): etcd for the HA config store, iptables/iproute2 for interception
# tests, nginx/haproxy/wrk for benchmarks, curl (HTTP/2 prior-knowledge tests) and h2load
# (nghttp2-client, HTTP/2 benchmarks), openssl (s_client as an mTLS peer), prometheus
# (scraped by alert and lazy-scope tests), postgresql (the shared access-log store),
# chromium (the dashboard's browser test). Idempotent; needs root (CI runs as root).
set -euo pipefail
pkgs=(etcd-server iptables iproute2 nginx haproxy wrk curl nghttp2-client openssl prometheus postgresql chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# A /tmp without the sticky world-writable mode stops apt's unprivileged sandbox user.
apt_opts=(-o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged services are not wanted running: tests start their own instances.
for s in etcd nginx haproxy prometheus postgresql; do
  systemctl stop "$s" 2>/dev/null || service "$s" stop 2>/dev/null || true
done
pkill -x etcd 2>/dev/null || true
pkill -x prometheus 2>/dev/null || true
