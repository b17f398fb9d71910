#!/usr/bin/env bash
# Make sure the PostgreSQL server the tests use answers and lets them in. They connect to
# $POSTGRES_URL, by default as postgres without a password on 127.0.0.1:5432
# (nameko_topology/testing/postgres.py). For that default, a missing server is installed (apt-get
# postgresql), its cluster created and started with trust auth on 127.0.0.1; a server named by
# POSTGRES_URL is only checked. A server that already answers is never changed. Waits are bounded
# by POSTGRES_WAIT seconds (default 30). Used by `make postgres`, so by `make test` (not `make run`:
# SQLite is the embedded default).
set -euo pipefail
source "$(dirname "$0")/lib/ensure.sh"

DEFAULT_URL="postgresql://postgres@127.0.0.1:5432/postgres"
URL="${POSTGRES_URL:-$DEFAULT_URL}"
WAIT="${POSTGRES_WAIT:-30}"
# where Debian's postgresql packages put the server binaries and the cluster configuration
LIB_DIR="${POSTGRES_LIB_DIR:-/usr/lib/postgresql}"
ETC_DIR="${POSTGRES_ETC_DIR:-/etc/postgresql}"
TRUST_LINE="host all all 127.0.0.1/32 trust"
# the URL may hold a password: messages name the variable, not its value
WHERE="${POSTGRES_URL:+POSTGRES_URL}"
WHERE="${WHERE:-127.0.0.1:5432}"

pg_up() { command -v pg_isready >/dev/null && pg_isready -q -t 5 -d "$URL"; }
login_ok() { PGCONNECT_TIMEOUT=5 psql -d "$URL" -Atqc 'select 1' >/dev/null 2>&1; }
installed() {
    command -v pg_ctlcluster >/dev/null && compgen -G "$LIB_DIR/*/bin/postgres" >/dev/null
}

# set_up_local VERSION: the cluster "main" of that version, with trust auth on 127.0.0.1, running
set_up_local() {
    local version="$1" hba="$ETC_DIR/$1/main/pg_hba.conf"
    require_root
    # the package creates "main" (but cannot start it where services may not be started, as in
    # a container); create it if it did not
    [[ -d "$ETC_DIR/$version/main" ]] || as_root pg_createcluster "$version" main
    if ! as_root grep -Eq "^${TRUST_LINE// /[[:space:]]+}" "$hba"; then
        say "allowing trust auth on 127.0.0.1 in $hba"
        as_root sed -i "1i $TRUST_LINE" "$hba"  # the first matching line wins
    fi
    # start it, or make a running one read pg_hba.conf again
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
        || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload \
        || say "WARNING: could not start PostgreSQL $version/main"
}

if ! pg_up; then
    [[ -z "${POSTGRES_URL:-}" ]] || die "no PostgreSQL answers at POSTGRES_URL"
    installed || apt_install postgresql
    version="$(compgen -G "$LIB_DIR/*/bin/postgres" | sort -V | tail -n1)"
    version="${version#"$LIB_DIR/"}"
    set_up_local "${version%%/*}"
    say "waiting up to ${WAIT}s for PostgreSQL on $WHERE"
    wait_for pg_up \
        || die "PostgreSQL did not answer on $WHERE within ${WAIT}s; see /var/log/postgresql/"
fi
say "PostgreSQL answers on $WHERE"

login_ok || die "PostgreSQL on $WHERE refuses the tests' login (by default postgres, no password):
    allow it with the first line \`$TRUST_LINE\` in its pg_hba.conf and reload the server,
    or name a server and user the tests may use in POSTGRES_URL"
say "the tests can log in"
