"""Shared test helpers (imported by test modules as ``from helpers.<module> import ...``)."""
