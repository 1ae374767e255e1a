"""Validate: statistics, schema and anomalies of the ingested splits."""
