"""Benchmarks, run on demand (``.venv/bin/python -m bench.NAME``); each prints its figures as one
JSON object on the last line of its output. Never part of the test suite."""
