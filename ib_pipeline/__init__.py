"""ib-pipeline: a market-data warehouse loader for the Interactive Brokers Web API."""
