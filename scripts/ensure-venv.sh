#!/usr/bin/env bash
# ensure-venv.sh PYTHON VENV: make sure the virtualenv VENV exists, with pip, made by
# `PYTHON -m venv`. On Debian and Ubuntu that needs the pythonX.Y-venv package (ensurepip), which
# only a real attempt reveals: then it is installed (apt-get) and the venv made again over the
# half-made one. Used by `make install`.
set -euo pipefail
source "$(dirname "$0")/lib/ensure.sh"

PYTHON="$1" VENV="$2"

[[ -x "$VENV/bin/pip" ]] && exit 0
command -v "$PYTHON" >/dev/null \
    || die "$PYTHON not found: this project needs Python 3.11 (\`make PYTHON=...\` names another)"

if ! output="$("$PYTHON" -m venv "$VENV" 2>&1)"; then
    grep -q ensurepip <<<"$output" || die "$PYTHON -m venv $VENV failed: $output"
    # Python's own message names the package, e.g. "apt install python3.11-venv"
    package="$(sed -nE 's/.*apt(-get)? install (python3[.0-9]*-venv).*/\2/p' <<<"$output")"
    package="${package%%$'\n'*}"
    apt_install "${package:-python3-venv}"
    "$PYTHON" -m venv "$VENV"
fi
say "created $VENV with $("$VENV/bin/python" --version)"
