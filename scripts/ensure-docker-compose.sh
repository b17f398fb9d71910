#!/usr/bin/env bash
# Try to install docker-compose (apt-get), which the static check of docker-compose.yml needs
# (tests/test_compose.py runs `docker-compose config -q`). It is optional: when it cannot be
# installed this warns, the check is skipped, and the exit status is still 0. Used by
# `make docker-compose`, so by `make test` (not `make run`).
set -euo pipefail
source "$(dirname "$0")/lib/ensure.sh"

if command -v docker-compose >/dev/null; then
    say "docker-compose is installed"
elif (apt_install docker-compose); then  # a subshell: apt_install stops its shell when it cannot
    say "docker-compose is installed"
else
    say "WARNING: could not install docker-compose; the docker-compose.yml check will be skipped"
fi
