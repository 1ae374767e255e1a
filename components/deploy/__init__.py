"""Deploy: a registered model version behind an endpoint, with a canary traffic share."""
