"""The explain stage: feature attributions on raw features (sampled Shapley), global importance."""
