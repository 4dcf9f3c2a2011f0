"""Conformance vectors of the morphnas architecture format (see README.md beside this file)."""
