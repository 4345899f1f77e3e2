#!/usr/bin/env bash
# Quick start: installs egov-agent into ./.venv and runs it with the bundled config/agent.yaml
# (monitors this host; /metrics and the status page on http://127.0.0.1:9470/). Extra arguments go to `run`.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "quickstart: installing python3 and python3-venv from Debian" >&2
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -q
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
fi

VENV="${EGOV_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check .
"$VENV/bin/egov-agent" check-config config/agent.yaml
exec "$VENV/bin/egov-agent" run --config config/agent.yaml "$@"
