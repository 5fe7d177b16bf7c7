"""The IBKR Web API client: one method per endpoint, pacing, retries, session upkeep.

Importable without Dagster. Normalisers in `normalize` turn its payloads into Arrow tables."""
