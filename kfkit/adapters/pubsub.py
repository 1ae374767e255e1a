"""Pub/Sub adapter: the only module that calls google-cloud-pubsub (monitoring alerts)."""

from __future__ import annotations

import json
from typing import Any

from kfkit.errors import ConfigError


def publish(topic: str, payload: dict[str, Any], publisher=None) -> str:
    """Publish a JSON alert to projects/PROJECT/topics/TOPIC; returns the message id."""
    if not topic.startswith("projects/") or "/topics/" not in topic:
        raise ConfigError(f"Pub/Sub topic {topic!r} must look like projects/PROJECT/topics/TOPIC")
    if publisher is None:
        from google.cloud import pubsub_v1
        publisher = pubsub_v1.PublisherClient()
    future = publisher.publish(topic, json.dumps(payload).encode("utf-8"), source="kfkit-monitor")
    return future.result(timeout=30)
