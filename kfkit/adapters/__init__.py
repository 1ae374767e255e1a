"""One adapter module per Google Cloud service: the only places that call those SDKs."""
