#!/usr/bin/env bash
# Install Graphviz (apt-get), whose `dot` renders `nameko-topology export --format svg`; its test
# (tests/nameko_topology/test_export.py) is skipped without it. Used by `make graphviz`, so by
# `make test`: CI installs it. When it cannot be installed this warns and exits 0.
set -euo pipefail
source "$(dirname "$0")/lib/ensure.sh"

if command -v dot >/dev/null; then
    say "graphviz is installed"
elif (apt_install graphviz); then  # a subshell: apt_install stops its shell when it cannot
    say "graphviz is installed"
else
    say "WARNING: could not install graphviz; the SVG export test will be skipped"
fi
