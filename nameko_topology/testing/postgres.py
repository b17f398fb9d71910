"""A throwaway PostgreSQL database per test, on the server of ``POSTGRES_URL``.

    with TestDatabase() as db:
        Stack(..., env={"DATABASE_URL": db.url})
"""
import os
import urllib.parse
import uuid

import psycopg2
from psycopg2 import sql

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_url():
    """The URL of the server's maintenance database, where databases are created and dropped."""
    return os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES_URL)


def server_available(url=None, timeout=3):
    """(True, None) if the server answers, else (False, why)."""
    try:
        psycopg2.connect(url or postgres_url(), connect_timeout=timeout).close()
    except psycopg2.Error as exc:
        return False, str(exc).strip()
    return True, None


class TestDatabase:
    """A database of its own (``nt_test_<hex>``), dropped with everything in it afterwards."""

    __test__ = False  # not a test class

    def __init__(self, server_url=None, prefix="nt_test"):
        self.server_url = server_url or postgres_url()
        self.name = f"{prefix}_{uuid.uuid4().hex}"
        parts = urllib.parse.urlsplit(self.server_url)
        # the same server and credentials, another database (libpq's form, for psycopg2)
        self.dsn = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))
        # what DATABASE_URL is given: the form the README documents, postgresql://...
        self.url = self.dsn

    def _execute(self, statement):
        # CREATE / DROP DATABASE cannot run inside a transaction block
        connection = psycopg2.connect(self.server_url, connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def create(self):
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return self

    def drop(self):
        """Drop the database, disconnecting whoever is still connected (PostgreSQL 13+)."""
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(self.name)))

    def query(self, statement, *params):
        """Rows of one read-only statement on this database."""
        connection = psycopg2.connect(self.dsn, connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.drop()
