"""Monitor: training-serving skew and drift of features and predictions, reports and alerts."""
