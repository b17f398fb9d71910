# Sourced by the scripts/ensure-*.sh scripts: messages, bounded waits, and the commands that need
# root (apt-get, starting system services). Those run directly as root, through passwordless sudo
# otherwise, and when neither is possible the script stops, printing the exact command to run.

ME="$(basename "$0" .sh)"

say() { echo "$ME: $*"; }
die() { echo "$ME: ERROR: $*" >&2; exit 1; }

# wait_for COMMAND...: run it every second until it succeeds, for up to $WAIT seconds
wait_for() {
    local i
    for ((i = 0; i < WAIT; i++)); do
        "$@" && return 0
        sleep 1
    done
    return 1
}

is_root() { [[ "$(id -u)" == 0 ]]; }
has_sudo() { command -v sudo >/dev/null; }
# `sudo -n` fails instead of asking for a password, so a non-interactive run never hangs
can_root() { is_root || { has_sudo && sudo -n true 2>/dev/null; }; }

# needs_root COMMAND_LINE...: stop, printing the command lines (joined by &&) to run as root
needs_root() {
    local line hint=""
    if has_sudo; then
        for line in "$@"; do hint+="${hint:+ && }sudo $line"; done
    else
        for line in "$@"; do hint+="${hint:+ && }$line"; done
        local quote="'" escaped="'\\''"
        hint="su -c '${hint//$quote/$escaped}'"
    fi
    {
        echo "$ME: this step needs root, and there is no passwordless sudo; run:"
        echo "    $hint"
        echo "$ME: then run make again."
    } >&2
    exit 1
}

# require_root: before a series of root commands, so that one command does them all: stop, unless
# we can run commands as root, printing how to run this whole script as root
require_root() {
    can_root || needs_root "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
}

# as_root COMMAND...: run it as root, or stop printing it
as_root() {
    can_root || needs_root "$(printf '%q ' "$@" | sed 's/ $//')"
    if is_root; then "$@"; else sudo -n "$@"; fi
}

# apt_install PACKAGE...: install them with apt-get. Returns non-zero when apt-get fails, so a
# caller for which the package is optional can go on.
apt_install() {
    command -v apt-get >/dev/null \
        || die "no apt-get on this system: install $* with its package manager, then run make again"
    can_root || needs_root "apt-get update" "apt-get install -y $*"
    say "installing $* (apt-get)"
    as_root apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
