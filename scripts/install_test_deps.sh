#!/usr/bin/env bash
# Installs what the test suite needs that is not a Python package: Debian's Chromium for the
# Playwright browser tests (never `playwright install`), Node.js/npm for the front-end build check and
# nginx for the live proxy tests.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
# nginx runs the shipped nginx-integration.conf in front of gunicorn (tests/nginx/test_live_proxy.py).
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: run as root or install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "test dependencies: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), node $(node --version)"
