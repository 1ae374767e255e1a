"""Train: a Keras model built from the validated schema and statistics, preprocessing inside it."""
