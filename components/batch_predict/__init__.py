"""Batch predict: a registered model over a warehouse table, predictions written back as a table."""
