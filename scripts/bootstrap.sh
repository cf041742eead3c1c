# Sourced by scripts/gateway and scripts/test: make sure .venv exists and holds the project.
# Needs Python >= 3.11 with venv; on Debian as root, installs python3-venv when missing.

_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_py="${PYTHON:-python3}"

if ! "$_py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "error: Python >= 3.11 is needed (found: $("$_py" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x "$_root/.venv/bin/python" ]; then
  if ! "$_py" -m venv --help >/dev/null 2>&1 || ! "$_py" -c 'import ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
  fi
  "$_py" -m venv "$_root/.venv"
fi

# Reinstall when the project's metadata changed since the last install.
_stamp="$_root/.venv/.installed-$1"
if [ ! -f "$_stamp" ] || [ "$_root/pyproject.toml" -nt "$_stamp" ] || [ "$_root/adapters/snmp/_cber.c" -nt "$_stamp" ]; then
  # The SNMP decoder's compiled loop needs a C compiler; without one the install still
  # succeeds and the receiver runs its Python loop (slower, same results).
  if ! command -v cc >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null || true
  fi
  "$_root/.venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  _target="$_root"
  [ "$1" = test ] && _target="$_root[test]"
  echo "installing the gateway into .venv (once; log in .venv/install.log)" >&2
  if ! "$_root/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$_target" >"$_root/.venv/install.log" 2>&1; then
    tail -20 "$_root/.venv/install.log" >&2
    echo "error: installing the project into .venv failed (see .venv/install.log)" >&2
    exit 1
  fi
  "$_root/.venv/bin/python" -c 'import gateway.cli.main' || { echo "error: installing the project into .venv failed" >&2; exit 1; }
  touch "$_stamp"
fi
