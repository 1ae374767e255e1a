"""A canary on a Vertex AI endpoint: the same analysis, Vertex's own figures.

- Which deployed model is the canary: the endpoint's deployed models and traffic split (Endpoint API).
- Requests, errors (non-2xx) and latency p50/p99: Cloud Monitoring's `response_count` and
  `prediction_latencies` for the endpoint's deployed models (kfkit.adapters.monitoring), which count
  every request; the request-response logging table is sampled and holds no status or latency.
- Predictions (and, joined by request key, ground truth): the endpoint's request-response logging
  table in BigQuery (`deployed_model_id`, `logging_time`, `request_payload`, `response_payload`),
  read through the BigQuery adapter.
- Acting: the split through the Endpoint API (the replaced split kept in kfkit's endpoint labels, so
  `kfkit rollback --backend vertex` undoes a promotion too), `champion` as a Vertex Model Registry
  version alias, the verdict as the version's label kfkit-canary.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from kfkit.components.canary.analysis import Served
from kfkit.errors import ConfigError
from kfkit.components.canary.traffic import add_answers
from kfkit.serving.request_logs import payload_items

BUCKETS = 20


def logging_table_id(table: str) -> str:
    """project.dataset.table from deploy's bq://project.dataset.table (either form accepted)."""
    bare = table[len("bq://"):] if table.startswith("bq://") else table
    if bare.count(".") != 2 or not all(bare.split(".")):
        raise ConfigError(f"request_logging_table must be bq://project.dataset.table (the endpoint's request-response "
                          f"logging table, where the canary's predictions are read), got {table!r}")
    return bare


class VertexCanary:
    def __init__(self, endpoint_name: str, *, project: str, location: str, request_logging_table: str,
                 bigquery_location: str = "US", vertex=None, monitoring=None, bigquery=None):
        if not request_logging_table:
            raise ConfigError("request_logging_table is empty: a canary on Vertex AI is judged on the predictions its "
                              "endpoint logs there (deploy's request_logging_table, bq://project.dataset.table)")
        self.table = logging_table_id(request_logging_table)
        if vertex is None:
            from kfkit.adapters.vertex import VertexAdapter

            vertex = VertexAdapter(project, location)
        if monitoring is None:
            from kfkit.adapters.monitoring import MonitoringAdapter

            monitoring = MonitoringAdapter(project)
        if bigquery is None:
            from kfkit.adapters.bigquery import BigQueryAdapter

            bigquery = BigQueryAdapter(project, bigquery_location)
        self.name = endpoint_name
        self.vertex, self.monitoring, self.bigquery = vertex, monitoring, bigquery
        self._endpoint_id = ""

    def state(self) -> dict[str, Any]:
        state = self.vertex.endpoint_state(self.name)
        self._endpoint_id = state["endpoint_id"]
        return state

    def labels(self, table: str, request_key: str, label_column: str) -> dict[str, Any]:
        from kfkit.components.canary.labels import labels_query, read_labels

        return read_labels(self.bigquery.query_to_arrow(labels_query(table, request_key, label_column),
                                                        what="canary labels"), table)

    def served(self, canary: dict, baseline: list[dict], start: float, end: float, labels, request_key: str):
        from kfkit.adapters.monitoring import alignment

        sides = {canary["id"]: Served(f"canary {canary['id']}")}
        base = Served("baseline " + ", ".join(m["id"] for m in baseline))
        sides.update({m["id"]: base for m in baseline})
        for side, ids in ((sides[canary["id"]], [canary["id"]]), (base, [m["id"] for m in baseline])):
            for point in self.monitoring.responses(self._endpoint_id, ids, start, end, alignment(start, end)):
                side.requests += int(point.value)
                side.errors += 0 if point.response_code.startswith("2") else int(point.value)
            for q in (50, 99):
                points = self.monitoring.latency(self._endpoint_id, ids, q, start, end, alignment(start, end))
                if points:
                    side.latency_percentiles[q] = max(points, key=lambda p: p.end).value
        self._read_predictions(sides, start, end, labels, request_key)
        return sides[canary["id"]], base, self._timeline(list(sides), start, end)

    def _read_predictions(self, sides: dict[str, Served], start: float, end: float, labels, request_key: str) -> None:
        sql = (f"SELECT deployed_model_id, request_payload, response_payload FROM `{self.table}` "
               "WHERE logging_time >= @window_start AND logging_time < @window_end")
        params = {"window_start": dt.datetime.fromtimestamp(start, dt.timezone.utc),
                  "window_end": dt.datetime.fromtimestamp(end, dt.timezone.utc)}
        for batch in self.bigquery.query_to_arrow(sql, params, what="canary request logs"):
            for deployed, request, response in zip(batch.column("deployed_model_id").to_pylist(),
                                                   batch.column("request_payload").to_pylist(),
                                                   batch.column("response_payload").to_pylist()):
                side = sides.get(str(deployed))
                if side is None:
                    continue  # a version that takes no traffic now
                add_answers(side, payload_items(request, "instances"), payload_items(response, "predictions"),
                            labels, request_key)

    def _timeline(self, ids: list[str], start: float, end: float) -> dict[str, list[list[float]]]:
        """Per deployed model and slice of the window: [requests, errors, p99 ms], from Cloud Monitoring."""
        from kfkit.adapters.monitoring import alignment

        width = max(end - start, 1e-9) / BUCKETS
        period = alignment(start, end, BUCKETS)
        series = {i: [[0, 0, 0.0] for _ in range(BUCKETS)] for i in ids}

        def slot(point):
            # the slice just before the end of the point's alignment period
            index = min(max(math.ceil((point.end - start) / width) - 1, 0), BUCKETS - 1)
            return series.get(point.deployed_model_id, [None] * BUCKETS)[index]

        for point in self.monitoring.responses(self._endpoint_id, ids, start, end, period):
            if (s := slot(point)) is not None:
                s[0] += int(point.value)
                s[1] += 0 if point.response_code.startswith("2") else int(point.value)
        for point in self.monitoring.latency(self._endpoint_id, ids, 99, start, end, period, per_model=True):
            if (s := slot(point)) is not None:
                s[2] = max(s[2], point.value)
        return series

    def promote(self, canary: dict) -> None:
        self.vertex.promote(self.name, canary["id"])

    def rollback(self) -> None:
        self.vertex.rollback(self.name)

    def set_champion(self, model: dict) -> None:
        self.vertex.set_alias(model["model"], model["version"], "champion")

    def tag(self, model: dict, value: str) -> None:
        from kfkit.components.canary.analysis import CANARY_TAG

        self.vertex.tag_version(model["model"], model["version"], CANARY_TAG, value)
