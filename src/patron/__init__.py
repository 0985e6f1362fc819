"""Patron: an open-source loyalty management system."""

__version__ = "0.1.0"
