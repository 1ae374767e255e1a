"""Evaluate: test-split metrics and the champion/challenger gate."""
