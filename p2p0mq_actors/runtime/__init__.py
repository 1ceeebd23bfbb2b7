"""Thin Pykka shells: actors that read the clock, call the core and do what it returns."""
