"""Fixtures of the reliability tests: ``db_url`` and ``postgres_url`` come from
``tests/conftest.py`` (one way to reach each database, see :mod:`tests.dbs`)."""
