"""Dagster asset definitions, one module per subject."""
