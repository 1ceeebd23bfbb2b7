"""concerns layer."""
