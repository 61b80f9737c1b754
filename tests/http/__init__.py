"""Tests of the HTTP adapter (a package, so that ``tests/http`` never shadows ``http``)."""
