#!/usr/bin/env bash
# Installs egov-agent on a Debian or Ubuntu office machine as a systemd service (deploy/README.md, "systemd"):
# the egov-agent system user, a virtualenv in /opt/egov-agent/venv with the package from this checkout (or a wheel),
# /etc/egov-agent/config.yaml (kept if present), the hardened unit, and enables and (re)starts it.
# Idempotent: run it again to upgrade; it never overwrites /etc/egov-agent/config.yaml or egov-agent.env.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh [OPTIONS]
  --config FILE       config to install as /etc/egov-agent/config.yaml when none exists
                      (default: config/agent.yaml of the checkout; e.g. agents/<org_id>.yaml from
                      `egov-agent inventory generate`)
  --source PATH       checkout directory or .whl file to install (default: the checkout holding this script)
  --pip-options OPTS  extra pip options, e.g. "--no-index --find-links /media/usb/wheels" for an offline office
  --icmp-raw          grant CAP_NET_RAW (drop-in icmp-raw.conf) where unprivileged ping sockets are not allowed
  --no-start          install and enable, but do not (re)start the service
  --root DIR          install into DIR instead of / (no apt, no systemctl start; for images and tests)
  --dry-run           print what would be done, change nothing
  -h, --help          this text
EOF
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(cd "$HERE/../.." && pwd)"
SOURCE="$CHECKOUT"
CONFIG=""
PIP_OPTIONS=""
ICMP_RAW=0
START=1
ROOT=""
DRY_RUN=0
USER_NAME=egov-agent

while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG="${2:?--config needs a file}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a path}"; shift 2 ;;
    --pip-options) PIP_OPTIONS="${2?--pip-options needs a value}"; shift 2 ;;
    --icmp-raw) ICMP_RAW=1; shift ;;
    --no-start) START=0; shift ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "$CONFIG" ] || CONFIG="$CHECKOUT/config/agent.yaml"
if [ -n "$ROOT" ]; then
  ROOT="$(cd "$ROOT" 2>/dev/null && pwd)" || { echo "install.sh: --root $ROOT is not a directory" >&2; exit 2; }
fi

OPT="$ROOT/opt/egov-agent"
VENV="$OPT/venv"
ETC="$ROOT/etc/egov-agent"
UNIT_DIR="$ROOT/etc/systemd/system"
DROPIN="$UNIT_DIR/egov-agent.service.d/icmp-raw.conf"

say() { echo "install.sh: $*" >&2; }
die() { say "$*"; exit 1; }
# Runs a command, or only prints it with --dry-run.
run() {
  if [ "$DRY_RUN" -eq 1 ]; then echo "+ $*"; else "$@"; fi
}

[ -f "$CONFIG" ] || die "config $CONFIG does not exist"
[ -e "$SOURCE" ] || die "source $SOURCE does not exist"
if [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0 ...), or use --root DIR / --dry-run"
fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  os_id="$(. /etc/os-release; echo "${ID:-} ${ID_LIKE:-}")"
  case " $os_id " in
    *" debian "*|*" ubuntu "*) ;;
    *) [ -n "$ROOT" ] || die "this installer is for Debian or Ubuntu (found: $os_id)" ;;
  esac
fi

# 1. Python with venv (the package needs 3.11 or newer).
if [ -z "$ROOT" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  say "installing python3 and python3-venv"
  run env DEBIAN_FRONTEND=noninteractive apt-get update -q
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
fi
if [ "$DRY_RUN" -eq 0 ] && ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  die "egov-agent needs Python 3.11 or newer; this system has $(python3 --version 2>&1)"
fi

# 2. The system user and group (no login, home = the state directory).
user_exists() {
  if [ -n "$ROOT" ]; then grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; else getent passwd "$USER_NAME" >/dev/null; fi
}
if user_exists; then
  say "user $USER_NAME exists"
else
  prefix=()
  if [ -n "$ROOT" ]; then
    run mkdir -p "$ROOT/etc"
    for file in passwd group shadow gshadow; do [ -e "$ROOT/etc/$file" ] || run touch "$ROOT/etc/$file"; done
    prefix=(--prefix "$ROOT")
  fi
  run useradd "${prefix[@]}" --system --user-group --home-dir /var/lib/egov-agent --no-create-home \
    --shell /usr/sbin/nologin --comment "egov-agent monitoring agent" "$USER_NAME"
fi
group_id() {
  if [ -n "$ROOT" ]; then
    awk -F: -v name="$USER_NAME" '$1 == name { print $3 }' "$ROOT/etc/group" 2>/dev/null || true
  else
    getent group "$USER_NAME" | cut -d: -f3 || true
  fi
}
GID="$(group_id)"
[ -n "$GID" ] || GID="$USER_NAME"  # only in --dry-run before the group exists
owner=()  # root:egov-agent when run as root; as another user (an image build under --root), the user's own
[ "$(id -u)" -ne 0 ] || owner=(-o 0 -g "$GID")

# 3. The virtualenv and the package. A checkout is copied first: pip builds in the source tree.
[ -x "$VENV/bin/python" ] || run python3 -m venv "$VENV"
stage=""
cleanup() { [ -z "$stage" ] || rm -rf "$stage"; }
trap cleanup EXIT
if [ -d "$SOURCE" ]; then
  for part in pyproject.toml agent collectors exporters; do
    [ -e "$SOURCE/$part" ] || die "$SOURCE is not an egov-agent checkout (no $part)"
  done
  stage="$(mktemp -d)"
  run cp -a "$SOURCE/pyproject.toml" "$SOURCE/README.md" "$SOURCE/agent" "$SOURCE/collectors" "$SOURCE/exporters" \
    "$stage/"
  package="$stage"
else
  package="$SOURCE"
fi
# shellcheck disable=SC2086 # PIP_OPTIONS is a list of options
run "$VENV/bin/python" -m pip install -q --disable-pip-version-check $PIP_OPTIONS "$package"
# Same version number, new code (an upgrade from a checkout): replace the package itself.
# shellcheck disable=SC2086
run "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall $PIP_OPTIONS "$package"
[ ! -f "$CHECKOUT/README.md" ] || run install -m 0644 "$CHECKOUT/README.md" "$OPT/README.md"

# 4. Configuration: never overwritten.
run install -d -m 0750 "${owner[@]}" "$ETC"
if [ -e "$ETC/config.yaml" ]; then
  say "keeping the existing $ETC/config.yaml"
else
  run install -m 0640 "${owner[@]}" "$CONFIG" "$ETC/config.yaml"
fi
if [ ! -e "$ETC/egov-agent.env" ]; then
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "+ write $ETC/egov-agent.env"
  else
    printf '%s\n' "# Extra flags of \`egov-agent run\`, e.g. OPTIONS=\"--log.level debug\"" 'OPTIONS=""' \
      > "$ETC/egov-agent.env"
    chmod 0640 "$ETC/egov-agent.env"
    [ "$(id -u)" -ne 0 ] || chown "0:$GID" "$ETC/egov-agent.env"
  fi
fi

# 5. The unit, and the CAP_NET_RAW drop-in only when asked for.
run install -d -m 0755 "$UNIT_DIR"
run install -m 0644 "$HERE/egov-agent.service" "$UNIT_DIR/egov-agent.service"
if [ "$ICMP_RAW" -eq 1 ]; then
  run install -d -m 0755 "$(dirname "$DROPIN")"
  run install -m 0644 "$HERE/egov-agent.service.d/icmp-raw.conf" "$DROPIN"
elif [ -e "$DROPIN" ]; then
  run rm -f "$DROPIN"
fi

# 6. Unprivileged ICMP needs the group inside net.ipv4.ping_group_range (read from this machine).
if [ "$ICMP_RAW" -eq 0 ] && grep -Eq '(kind|module): *icmp' "$ETC/config.yaml" "$CONFIG" 2>/dev/null; then
  read -r low high < /proc/sys/net/ipv4/ping_group_range || { low=1; high=0; }
  if [[ "$GID" =~ ^[0-9]+$ ]] && { [ "$GID" -lt "$low" ] || [ "$GID" -gt "$high" ]; }; then
    say "warning: the config uses ICMP but group $USER_NAME ($GID) is outside net.ipv4.ping_group_range" \
      "($low $high): set it (echo 'net.ipv4.ping_group_range = 0 2147483647' > /etc/sysctl.d/60-egov-agent.conf;" \
      "sysctl --system) or rerun with --icmp-raw"
  fi
fi

# 7. Enable, check the config, (re)start.
if [ -n "$ROOT" ]; then
  run systemctl --root="$ROOT" enable egov-agent.service
  if [ "$DRY_RUN" -eq 1 ]; then say "dry run: nothing was changed"; else say "installed into $ROOT (not started)"; fi
  exit 0
fi
run "$VENV/bin/egov-agent" check-config "$ETC/config.yaml"
run systemctl daemon-reload
run systemctl enable egov-agent.service
if [ "$START" -eq 1 ]; then
  run systemctl restart egov-agent.service
  run systemctl --no-pager --lines=0 status egov-agent.service
fi
[ "$DRY_RUN" -eq 0 ] || { say "dry run: nothing was changed"; exit 0; }
say "done: journalctl -u egov-agent; reload after editing $ETC/config.yaml: systemctl reload egov-agent"
