#!/usr/bin/env bash
# CI: make sure a headless-capable chromium exists for the browser tests (Debian's package).
# Installs it with apt-get only when /usr/bin/chromium is missing; progress goes to stderr.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium already installed: /usr/bin/chromium" >&2
    exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO="sudo"
fi

echo "installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
{ ${SUDO} apt-get update -qq && ${SUDO} apt-get install -y -qq chromium; } >&2
/usr/bin/chromium --version >&2
