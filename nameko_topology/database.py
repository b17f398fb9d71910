"""The ``Database`` dependency: a service's own SQL database through SQLAlchemy.

By default each service keeps a SQLite file, ``<DATA_DIR>/<service>.sqlite3``; ``DATABASE_URL``
in the config points every service at one server instead (each service still owns its own
tables, whose names it prefixes with its service name).
"""
import os
from contextlib import contextmanager
from functools import cached_property, lru_cache
from pathlib import Path

from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from nameko_topology.constants import (
    DATA_DIR_CONFIG_KEY, DATABASE_URL_CONFIG_KEY, DEFAULT_DATA_DIR,
)



class Database(DependencyProvider):
    """Injects a :class:`DatabaseHandle` for the service's database.

    The tables of ``metadata`` are created at start-up if they do not exist.

    :Parameters:
        metadata: the ``sqlalchemy.MetaData`` holding the service's tables.

    Example::

        class Inventory:
            db = Database(metadata)

            @rpc
            def get_inventory(self):
                with self.db.transaction() as connection:
                    ...
    """

    def __init__(self, metadata, migrations=None):
        self.metadata = metadata
        self.migrations = migrations

    @cached_property
    def handle(self):
        """The service's :class:`DatabaseHandle`; built on first use by any extension's setup."""
        config = self.container.config
        service = self.container.service_name
        url = config.get(DATABASE_URL_CONFIG_KEY) or _sqlite_url(
            config.get(DATA_DIR_CONFIG_KEY) or DEFAULT_DATA_DIR, service)
        handle = DatabaseHandle(url)
        if self.migrations is not None:
            handle.migrate(self.metadata, self.migrations, f"{service}_alembic_version")
        return handle

    def setup(self):
        self.handle.create(self.metadata)

    def stop(self):
        self.handle.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self.handle


def database_of(container, attr_name, needed_by):
    """The :class:`DatabaseHandle` of the ``Database`` dependency that ``container``'s service
    holds as ``attr_name``, for the extension ``needed_by`` (named in the error if there is
    none)."""
    for dependency in container.dependencies:
        if dependency.attr_name == attr_name:
            if not isinstance(dependency, Database):
                raise TypeError(f"{needed_by} of service {container.service_name!r} needs "
                                f"{attr_name!r} to be a Database dependency, but it is a "
                                f"{type(dependency).__name__}")
            return dependency.handle
    raise AttributeError(f"{needed_by} of service {container.service_name!r} needs a "
                         f"Database dependency named {attr_name!r}: the service has none "
                         f"(declare `{attr_name} = Database(metadata)` on the service class)")


def _sqlite_url(data_dir, service_name):
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(data_dir, service_name + '.sqlite3'))}"


class DatabaseHandle:
    """An engine plus transactions that are safe among a container's green threads."""

    def __init__(self, url):
        url = _with_driver(url)
        if url.get_backend_name() == "sqlite":
            # One connection, one transaction at a time: SQLite serialises writers anyway, and
            # a green thread blocked inside SQLite's busy wait would block the whole process,
            # including the green thread holding the lock.
            self.engine = create_engine(
                url, poolclass=StaticPool,
                # every use is a transaction that ends in commit or rollback: the pool's
                # extra rollback when the connection comes back would be one more call each
                pool_reset_on_return=None,
                connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _tune_sqlite)
            self._lock = Semaphore(1)
        else:
            if url.get_backend_name() == "postgresql":
                # psycopg2 blocks in C: without this, a worker waiting on a row lock held by
                # another worker of the same process would stall the process, lock holder too
                # (imported here: PostgreSQL support is the optional extra `postgres`)
                import psycogreen.eventlet
                psycogreen.eventlet.patch_psycopg()
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            self._lock = None
        self._schema_lock = Semaphore(1)
        self._created = set()  # the MetaData whose tables this handle has made sure of
        self._migrations = {}  # MetaData -> (script location, version table, attributes)

    def migrate(self, metadata, script_location, version_table, **attributes):
        """Make the tables of ``metadata`` with the Alembic migrations in ``script_location``
        (see :mod:`nameko_topology.migrations`) instead of creating them: :meth:`create` then
        upgrades to their head, recording it in ``version_table``."""
        self._migrations[metadata] = (script_location, version_table, attributes)

    def create(self, metadata):
        """Create the tables of ``metadata`` that do not exist yet, or bring them to the head of
        their migrations (:meth:`migrate`).

        Safe to call from several extensions' ``setup`` at once (nameko runs them concurrently)
        and from several processes sharing one PostgreSQL database: "create if missing" and an
        upgrade are a check then a change, so concurrent callers are serialised.
        """
        with self._schema_lock:
            if metadata in self._created:
                return  # several extensions of one service share its tables
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # released at commit; DDL is transactional in PostgreSQL
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _SCHEMA_LOCK_KEY})
                if metadata in self._migrations:
                    script_location, version_table, attributes = self._migrations[metadata]
                    # imported here: Alembic is only for the services that have migrations
                    from nameko_topology.migrations import upgrade
                    upgrade(connection, script_location, version_table, **attributes)
                else:
                    metadata.create_all(connection)
            self._created.add(metadata)

    def ping(self):
        """Raise if the database cannot run a query."""
        with self.transaction() as connection:
            connection.execute(text("SELECT 1"))

    @contextmanager
    def transaction(self):
        """A ``Connection`` inside one transaction: committed on exit, rolled back on an
        exception. SQLAlchemy Core, not the ORM: the services speak in statements."""
        if self._lock is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._lock, self.engine.begin() as connection:
            yield connection


# an arbitrary constant that names "schema creation" among PostgreSQL advisory locks
_SCHEMA_LOCK_KEY = 0x6E616D656B6F


def _with_driver(url):
    """``url`` parsed, with PostgreSQL's driver made explicit.

    A plain ``postgresql://`` URL means psycopg 3 from SQLAlchemy 2.1 on but psycopg2 before;
    psycopg2 is the driver this package installs.
    """
    url = make_url(url)
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg2")
    return url


def _tune_sqlite(dbapi_connection, connection_record):
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is crash-safe for the process in WAL
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def insert_once(connection, table, **values):
    """Insert a row unless one with the same unique key exists; True if it was inserted.

    The idempotent-consumer check: recording a message's key in the same transaction as its
    effect, under a unique constraint, makes a redelivered or concurrently delivered message
    apply its effect once. ``ON CONFLICT DO NOTHING`` makes a racing duplicate wait for the
    first transaction and then do nothing, instead of failing the transaction.
    """
    return connection.execute(_insert_or_skip(connection.dialect.name, table),
                              values).rowcount == 1


def insert_each_once(connection, table, rows):
    """:func:`insert_once` for each of ``rows`` (dicts of values), in one ``executemany``.

    For a batch that only needs its duplicates skipped: it does not tell which rows were.
    """
    if rows:
        connection.execute(_insert_or_skip(connection.dialect.name, table), rows)


@lru_cache(maxsize=None)
def _insert_or_skip(dialect_name, table):
    # one statement object per table: SQLAlchemy then finds its compiled form in its cache
    # by identity instead of rebuilding and re-keying the statement on every call
    return _UPSERT_DIALECTS[dialect_name].insert(table).on_conflict_do_nothing()


# the databases supported: both have INSERT ... ON CONFLICT DO NOTHING
_UPSERT_DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}
