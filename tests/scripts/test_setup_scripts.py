"""The set-up decisions of scripts/ensure-*.sh, the Makefile and .ci/run, on stub commands.

Each script runs with a PATH of stubs (which record their calls) and a few real basic tools, so
no real apt-get, sudo, RabbitMQ or PostgreSQL is reached. `id` is a stub too: it says whether we
are root. A "package" is a set of stubs that the apt-get stub puts on the PATH when it installs
it, plus an optional post-install script (the package's own side effects).
"""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
BASH = shutil.which("bash")
REAL_TOOLS = ("bash", "basename", "cat", "chmod", "cp", "dirname", "env", "grep", "head", "mkdir",
              "rm", "sed", "sleep", "sort", "tail", "touch", "true")

APT_GET = """
if [[ $1 == install ]]; then
    for arg in "$@"; do
        [[ -d "$PKGS/$arg" ]] || continue
        cp "$PKGS/$arg"/bin/* "$STUBS"/ 2>/dev/null || true
        [[ ! -x "$PKGS/$arg/postinst" ]] || "$PKGS/$arg/postinst"
    done
fi
"""
PASSWORDLESS_SUDO = '[[ $1 == -n ]] && shift; exec "$@"'
SUDO_WANTS_PASSWORD = "exit 1"  # what `sudo -n` does when a password is needed


class Sandbox:
    """A temporary PATH of recording stubs, and the scripts run on it."""

    def __init__(self, tmp_path):
        self.root = tmp_path
        self.stubs = tmp_path / "stubs"
        self.packages = tmp_path / "packages"
        self.state = tmp_path / "state"
        self.log = tmp_path / "calls.log"
        tools = tmp_path / "tools"
        for directory in (self.stubs, self.packages, self.state, tools):
            directory.mkdir()
        for tool in REAL_TOOLS:
            (tools / tool).symlink_to(shutil.which(tool))
        (tools / "python3").symlink_to(sys.executable)
        self.env = {"PATH": f"{self.stubs}:{tools}", "HOME": str(tmp_path),
                    "STUBS": str(self.stubs), "PKGS": str(self.packages),
                    "STATE": str(self.state), "LOG": str(self.log)}

    def stub(self, name, body="exit 0", directory=None):
        """A command that logs its arguments, then runs the bash `body`."""
        path = (directory or self.stubs) / name
        path.write_text(f'#!{BASH}\necho "{name} $*" >> "$LOG"\n{textwrap.dedent(body)}\n')
        path.chmod(0o755)

    def installed(self, stubs):
        """These stubs (name -> body) on the PATH, as if their package were installed."""
        for name, body in stubs.items():
            self.stub(name, body)

    def as_user(self, sudo=None):
        """Not root; `sudo` is the sudo stub's body (None: no sudo at all)."""
        self.stub("id", 'echo 1000')
        if sudo is not None:
            self.stub("sudo", sudo)

    def as_root(self):
        self.stub("id", 'echo 0')

    def package(self, name, stubs=(), postinst=None):
        """What `apt-get install name` puts on the PATH (stub name -> body) and runs."""
        bin_dir = self.packages / name / "bin"
        bin_dir.mkdir(parents=True)
        for stub_name, body in dict(stubs).items():
            self.stub(stub_name, body, bin_dir)
        if postinst:
            self.stub("postinst", postinst, self.packages / name)

    def flag(self, name):
        return (self.state / name).exists()

    def calls(self):
        """The stub commands run, each as "name args...", in order."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, script, *args, **env):
        return subprocess.run([BASH, str(script), *map(str, args)], env={**self.env, **env},
                              capture_output=True, text=True, timeout=60)


def called(sandbox, prefix):
    return [call for call in sandbox.calls() if call.startswith(prefix)]


@pytest.fixture
def sandbox(tmp_path):
    box = Sandbox(tmp_path)
    box.stub("apt-get", APT_GET)
    return box


# -- RabbitMQ ----------------------------------------------------------------------------------

RABBITMQ = SCRIPTS / "ensure-rabbitmq.sh"
# the script's AMQP port check is `timeout 5 bash -c "exec 3<>/dev/tcp/..."`
PORT_CHECK = '[[ -e "$STATE/rabbit-running" ]]'
MANAGEMENT_CHECK = '[[ -e "$STATE/rabbit-running" && -e "$STATE/management" ]]'
RABBITMQ_SERVER = {
    "rabbitmq-server": 'touch "$STATE/rabbit-running"',
    "rabbitmq-plugins": 'touch "$STATE/management"',
}


@pytest.fixture
def rabbit(sandbox):
    sandbox.stub("timeout", PORT_CHECK)
    sandbox.stub("curl", MANAGEMENT_CHECK)
    sandbox.package("rabbitmq-server", RABBITMQ_SERVER)
    return sandbox


def test_rabbitmq_already_up_installs_and_changes_nothing(rabbit):
    rabbit.as_user()  # no root needed either
    (rabbit.state / "rabbit-running").touch()
    (rabbit.state / "management").touch()
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 0, result.stderr
    assert "AMQP port localhost:5672 is open" in result.stdout
    assert "management API http://localhost:15672/ answers" in result.stdout
    assert {call.split()[0] for call in rabbit.calls()} <= {"id", "timeout", "curl"}


def test_rabbitmq_missing_as_root_is_installed_and_started_with_management(rabbit):
    rabbit.as_root()
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 0, result.stderr
    assert [call for call in rabbit.calls() if not call.startswith(("id", "timeout", "curl"))] == [
        "apt-get update -qq",
        "apt-get install -y -qq rabbitmq-server",
        "rabbitmq-plugins --offline enable rabbitmq_management",
        "rabbitmq-server -detached",
    ]
    assert "management API http://localhost:15672/ answers" in result.stdout


def test_rabbitmq_missing_with_passwordless_sudo_installs_and_starts_through_sudo(rabbit):
    rabbit.as_user(sudo=PASSWORDLESS_SUDO)
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 0, result.stderr
    assert [call for call in called(rabbit, "sudo -n ") if call != "sudo -n true"] == [
        "sudo -n apt-get update -qq",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server",
        "sudo -n rabbitmq-plugins --offline enable rabbitmq_management",
        "sudo -n rabbitmq-server -detached",
    ]


@pytest.mark.parametrize("sudo, command", [
    (None, "su -c 'apt-get update && apt-get install -y rabbitmq-server'"),
    (SUDO_WANTS_PASSWORD, "sudo apt-get update && sudo apt-get install -y rabbitmq-server"),
], ids=["no-sudo", "sudo-with-password"])
def test_rabbitmq_missing_without_root_stops_with_the_apt_get_command(rabbit, sudo, command):
    rabbit.as_user(sudo=sudo)
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 1
    assert f"\n    {command}\n" in result.stderr
    assert not called(rabbit, "apt-get")
    assert not rabbit.flag("rabbit-running")


def test_rabbitmq_stopped_without_root_stops_with_the_command_that_starts_it(rabbit):
    rabbit.as_user(sudo=SUDO_WANTS_PASSWORD)
    rabbit.installed(RABBITMQ_SERVER)
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 1
    assert f"\n    sudo {RABBITMQ}\n" in result.stderr
    assert not called(rabbit, "rabbitmq-")


def test_rabbitmq_installed_and_stopped_is_started_not_installed(rabbit):
    rabbit.as_root()
    rabbit.installed(RABBITMQ_SERVER)
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 0, result.stderr
    assert not called(rabbit, "apt-get")
    assert called(rabbit, "rabbitmq-server") == ["rabbitmq-server -detached"]


def test_rabbitmq_up_without_management_gets_the_plugin_enabled(rabbit):
    rabbit.as_root()
    rabbit.stub("rabbitmq-server", "exit 99")  # must not be started again
    rabbit.stub("rabbitmq-plugins", RABBITMQ_SERVER["rabbitmq-plugins"])
    (rabbit.state / "rabbit-running").touch()
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 0, result.stderr
    assert called(rabbit, "rabbitmq-") == ["rabbitmq-plugins enable rabbitmq_management"]


def test_curl_missing_is_installed(rabbit):
    rabbit.as_root()
    (rabbit.stubs / "curl").rename(rabbit.root / "curl")
    rabbit.package("curl", {"curl": MANAGEMENT_CHECK})
    rabbit.installed(RABBITMQ_SERVER)
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 0, result.stderr
    assert called(rabbit, "apt-get install") == ["apt-get install -y -qq curl"]


def test_no_apt_get_stops_naming_the_package(rabbit):
    rabbit.as_root()
    (rabbit.stubs / "apt-get").unlink()
    result = rabbit.run(RABBITMQ)
    assert result.returncode == 1
    assert "no apt-get on this system: install rabbitmq-server" in result.stderr


# -- PostgreSQL --------------------------------------------------------------------------------

POSTGRES = SCRIPTS / "ensure-postgres.sh"
TRUST = "host all all 127.0.0.1/32 trust"
DEFAULT_HBA = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n"
# psql logs in when the server runs and the first host line of 15/main trusts 127.0.0.1
PG_CLIENT = {
    "pg_isready": '[[ -e "$STATE/pg-running" ]]',
    "psql": f'grep -m1 "^host" "$PG_ETC/15/main/pg_hba.conf" | grep -qx "{TRUST}"',
}
PG_SERVER = {
    **PG_CLIENT,
    "pg_ctlcluster": '[[ $4 != start ]] || touch "$STATE/pg-running"',
    "pg_createcluster":
        f'mkdir -p "$PG_ETC/$1/$2"; printf "{DEFAULT_HBA}" > "$PG_ETC/$1/$2/pg_hba.conf"',
}


@pytest.fixture
def pg(sandbox):
    lib, etc = sandbox.root / "lib-postgresql", sandbox.root / "etc-postgresql"
    sandbox.env.update(POSTGRES_LIB_DIR=str(lib), POSTGRES_ETC_DIR=str(etc), PG_ETC=str(etc),
                       POSTGRES_WAIT="2")
    # the package installs the server and creates (but, in a container, cannot start) "main"
    sandbox.package("postgresql", PG_SERVER, postinst=f"""
        mkdir -p "{lib}/15/bin" && touch "{lib}/15/bin/postgres"
        pg_createcluster 15 main
    """)
    sandbox.lib, sandbox.etc = lib, etc
    return sandbox


def add_server_binary(pg, version="15"):
    (pg.lib / version / "bin").mkdir(parents=True)
    (pg.lib / version / "bin" / "postgres").touch()


def hba(pg, version="15"):
    return (pg.etc / version / "main" / "pg_hba.conf").read_text()


def test_postgres_up_installs_and_changes_nothing(pg):
    pg.as_user()
    pg.installed(PG_CLIENT)
    (pg.state / "pg-running").touch()
    (pg.etc / "15" / "main").mkdir(parents=True)
    (pg.etc / "15" / "main" / "pg_hba.conf").write_text(TRUST + "\n")
    result = pg.run(POSTGRES)
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL answers on 127.0.0.1:5432" in result.stdout
    assert "the tests can log in" in result.stdout
    assert {call.split()[0] for call in pg.calls()} <= {"id", "pg_isready", "psql"}
    assert hba(pg) == TRUST + "\n"


def test_postgres_missing_as_root_is_installed_trusted_and_started(pg):
    pg.as_root()
    result = pg.run(POSTGRES)
    assert result.returncode == 0, result.stderr
    assert called(pg, "apt-get install") == ["apt-get install -y -qq postgresql"]
    assert hba(pg) == TRUST + "\n" + DEFAULT_HBA  # first, so that it wins
    assert called(pg, "pg_ctlcluster") == ["pg_ctlcluster --skip-systemctl-redirect 15 main start"]
    assert "the tests can log in" in result.stdout


def test_postgres_installed_without_a_cluster_gets_one_of_the_newest_version(pg):
    pg.as_root()
    pg.installed(PG_SERVER)
    for version in ("9.6", "15"):  # a text sort would take 9.6
        add_server_binary(pg, version)
    result = pg.run(POSTGRES)
    assert result.returncode == 0, result.stderr
    assert not called(pg, "apt-get")
    assert called(pg, "pg_createcluster") == ["pg_createcluster 15 main"]
    assert hba(pg).startswith(TRUST + "\n")


def test_postgres_running_cluster_that_does_not_answer_is_reloaded(pg):
    pg.as_root()
    pg.installed(PG_SERVER)
    # start fails (it runs already); the reload makes it read the new pg_hba.conf and answer
    pg.stub("pg_ctlcluster", '[[ $4 == reload ]] && touch "$STATE/pg-running" || exit 2')
    add_server_binary(pg)
    result = pg.run(POSTGRES)
    assert result.returncode == 0, result.stderr
    assert [call.split()[4] for call in called(pg, "pg_ctlcluster")] == ["start", "reload"]


def test_postgres_missing_without_root_stops_with_the_apt_get_command(pg):
    pg.as_user(sudo=SUDO_WANTS_PASSWORD)
    result = pg.run(POSTGRES)
    assert result.returncode == 1
    assert "\n    sudo apt-get update && sudo apt-get install -y postgresql\n" in result.stderr
    assert not called(pg, "apt-get")


def test_postgres_set_up_without_root_stops_with_the_command_that_does_it_all(pg):
    pg.as_user()  # no sudo
    pg.installed(PG_SERVER)
    add_server_binary(pg)
    result = pg.run(POSTGRES)
    assert result.returncode == 1
    assert f"\n    su -c '{POSTGRES}'\n" in result.stderr  # which does all the steps
    assert not called(pg, "pg_createcluster")


@pytest.mark.parametrize("sandbox_name, script, env, error", [
    ("rabbit", RABBITMQ, {"AMQP_URI": "amqp://app:s3cret@rabbit.example:5672/"},
     "no broker answers at rabbit.example:5672"),
    ("pg", POSTGRES, {"POSTGRES_URL": "postgresql://app:s3cret@db.example:5432/app"},
     "no PostgreSQL answers at POSTGRES_URL"),
], ids=["rabbitmq", "postgres"])
def test_named_server_down_is_neither_installed_nor_shown_with_its_password(
        request, sandbox_name, script, env, error):
    box = request.getfixturevalue(sandbox_name)
    box.as_root()
    result = box.run(script, **env)
    assert result.returncode == 1
    assert error in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert not called(box, "apt-get")


def test_postgres_up_refusing_the_login_stops_and_changes_nothing(pg):
    pg.as_root()
    pg.installed(PG_SERVER)
    (pg.state / "pg-running").touch()
    (pg.etc / "15" / "main").mkdir(parents=True)
    (pg.etc / "15" / "main" / "pg_hba.conf").write_text(DEFAULT_HBA)
    result = pg.run(POSTGRES)
    assert result.returncode == 1
    assert "refuses the tests' login" in result.stderr
    assert f"`{TRUST}`" in result.stderr
    assert hba(pg) == DEFAULT_HBA
    assert {call.split()[0] for call in pg.calls()} <= {"id", "pg_isready", "psql"}


# -- optional tools: docker-compose, graphviz --------------------------------------------------

DOCKER_COMPOSE = SCRIPTS / "ensure-docker-compose.sh"
GRAPHVIZ = SCRIPTS / "ensure-graphviz.sh"


@pytest.fixture(params=[(DOCKER_COMPOSE, "docker-compose", "docker-compose"),
                        (GRAPHVIZ, "graphviz", "dot")], ids=["docker-compose", "graphviz"])
def optional(sandbox, request):
    """``(sandbox, script, package, command)`` of a tool that is installed if it can be."""
    script, package, command = request.param
    sandbox.package(package, {command: "exit 0"})
    return sandbox, script, package, command


def test_optional_tool_present_installs_nothing(optional):
    sandbox, script, package, command = optional
    sandbox.as_user()
    sandbox.stub(command)
    result = sandbox.run(script)
    assert result.returncode == 0, result.stderr
    assert f"{package} is installed" in result.stdout
    assert sandbox.calls() == []


def test_optional_tool_missing_as_root_is_installed(optional):
    sandbox, script, package, command = optional
    sandbox.as_root()
    result = sandbox.run(script)
    assert result.returncode == 0, result.stderr
    assert called(sandbox, "apt-get install") == [f"apt-get install -y -qq {package}"]
    assert (sandbox.stubs / command).exists()


def test_optional_tool_missing_without_root_warns_with_the_command_and_goes_on(optional):
    sandbox, script, package, command = optional
    sandbox.as_user(sudo=SUDO_WANTS_PASSWORD)
    result = sandbox.run(script)
    assert result.returncode == 0
    assert f"sudo apt-get update && sudo apt-get install -y {package}" in result.stderr
    assert f"WARNING: could not install {package}" in result.stdout
    assert not called(sandbox, "apt-get")


def test_optional_tool_failing_apt_get_warns_and_goes_on(optional):
    sandbox, script, package, command = optional
    sandbox.as_root()
    sandbox.stub("apt-get", "[[ $1 == update ]] && exit 100 || exit 0")
    result = sandbox.run(script)
    assert result.returncode == 0
    assert f"WARNING: could not install {package}" in result.stdout
    assert called(sandbox, "apt-get") == ["apt-get update -qq"]  # no install after it failed


# -- the virtualenv ----------------------------------------------------------------------------

VENV = SCRIPTS / "ensure-venv.sh"
# Debian's python3.11 without python3.11-venv: venv leaves a half-made environment and says
NO_ENSUREPIP = (
    "The virtual environment was not created successfully because ensurepip is not\n"
    "available.  On Debian/Ubuntu systems, you need to install the python3-venv\n"
    "package using the following command.\n\n    apt install python3.11-venv\n")
PYTHON = f"""
mkdir -p "$3/bin" && touch "$3/bin/python"
if [[ -e "$STATE/venv-package" ]]; then
    printf '#!{BASH}\necho Python 3.11.2\n' > "$3/bin/python" && chmod +x "$3/bin/python"
    touch "$3/bin/pip" && chmod +x "$3/bin/pip"
else
    printf "{NO_ENSUREPIP}" >&2
    exit 1
fi
"""


@pytest.fixture
def venv(sandbox):
    sandbox.stub("python3.11", PYTHON)
    sandbox.package("python3.11-venv", postinst='touch "$STATE/venv-package"')
    sandbox.venv = sandbox.root / "venv"
    return sandbox


def test_venv_with_pip_is_left_alone(venv):
    venv.as_user()
    (venv.venv / "bin").mkdir(parents=True)
    (venv.venv / "bin" / "pip").touch(mode=0o755)
    result = venv.run(VENV, "python3.11", venv.venv)
    assert result.returncode == 0, result.stderr
    assert venv.calls() == []


def test_venv_without_ensurepip_as_root_installs_the_package_python_names(venv):
    venv.as_root()
    result = venv.run(VENV, "python3.11", venv.venv)
    assert result.returncode == 0, result.stderr
    assert called(venv, "apt-get install") == ["apt-get install -y -qq python3.11-venv"]
    assert len(called(venv, "python3.11 -m venv")) == 2  # again, over the half-made one
    assert (venv.venv / "bin" / "pip").exists()
    assert "created" in result.stdout and "Python 3.11.2" in result.stdout


def test_venv_without_ensurepip_and_root_stops_with_the_apt_get_command(venv):
    venv.as_user(sudo=SUDO_WANTS_PASSWORD)
    result = venv.run(VENV, "python3.11", venv.venv)
    assert result.returncode == 1
    assert "\n    sudo apt-get update && sudo apt-get install -y python3.11-venv\n" in result.stderr
    assert not called(venv, "apt-get")


def test_venv_failing_for_another_reason_installs_nothing(venv):
    venv.as_root()
    venv.stub("python3.11", 'echo "[Errno 28] No space left on device" >&2; exit 1')
    result = venv.run(VENV, "python3.11", venv.venv)
    assert result.returncode == 1
    assert "No space left on device" in result.stderr
    assert not called(venv, "apt-get")


def test_missing_python_stops_naming_it(venv):
    venv.as_root()
    result = venv.run(VENV, "python3.99", venv.venv)
    assert result.returncode == 1
    assert "python3.99 not found: this project needs Python 3.11" in result.stderr


# -- the root hint -----------------------------------------------------------------------------

def test_su_hint_keeps_single_quotes_of_the_command(sandbox):
    sandbox.as_user()
    script = sandbox.root / "hint.sh"
    script.write_text(f'source {SCRIPTS}/lib/ensure.sh\nneeds_root "echo it\'s"\n')
    result = sandbox.run(script)
    assert result.returncode == 1
    hint = result.stderr.splitlines()[1].strip()
    assert hint == "su -c 'echo it'\\''s'"
    # what su -c hands to its shell is the command again
    unquoted = subprocess.run([BASH, "-c", f"printf %s {hint[len('su -c '):]}"],
                              capture_output=True, text=True, check=True).stdout
    assert unquoted == "echo it's"


# -- the Makefile and .ci/run ------------------------------------------------------------------

def make_dry_run(target):
    result = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), target],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_ensures_only_the_broker():
    commands = make_dry_run("run")
    assert "scripts/ensure-rabbitmq.sh" in commands
    assert "ensure-postgres" not in commands and "ensure-docker-compose" not in commands


def test_make_test_ensures_the_broker_postgres_docker_compose_and_graphviz_before_pytest():
    commands = make_dry_run("test").splitlines()
    ensure = [line for line in commands if line.startswith("scripts/ensure-")]
    assert ensure[-4:] == ["scripts/ensure-rabbitmq.sh", "scripts/ensure-postgres.sh",
                           "scripts/ensure-docker-compose.sh", "scripts/ensure-graphviz.sh"]
    assert commands[-1] == ".venv/bin/pytest"


@pytest.mark.parametrize("has_make", [True, False], ids=["make-present", "make-missing"])
def test_ci_runs_make_test_and_bootstraps_only_make(sandbox, has_make):
    sandbox.package("make", {"make": "exit 0"})
    if has_make:
        sandbox.stub("make")
    result = sandbox.run(ROOT / ".ci" / "run")
    assert result.returncode == 0, result.stderr
    bootstrap = ["apt-get update -qq", "apt-get install -y -qq make"]
    assert sandbox.calls() == ([] if has_make else bootstrap) + ["make test"]
