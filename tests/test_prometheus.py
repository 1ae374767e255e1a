"""The Prometheus adapter against a real Prometheus holding Knative's queue-proxy metrics.

Expected values follow Prometheus' documented semantics (prometheus.io/docs/prometheus/latest/querying/functions/):
`increase()` over a range whose first and last samples sit on its edges is the last value minus the
first, with nothing extrapolated; `histogram_quantile()` interpolates linearly inside the bucket the
rank falls in, the lowest bucket starting at 0. Metric names and labels are Knative Serving's
documented queue-proxy metrics (knative.dev/docs/serving/services/service-metrics/).
"""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kfkit.adapters.prometheus import PrometheusAdapter, seconds, selector
from kfkit.errors import ConfigError, KfkitError
from tests import prometheus_server
from tests.prometheus_server import NAMESPACE

T0 = (int(time.time()) // 60) * 60 - 7200  # two hours ago: inside the retention, outside the head block
CANARY, BASELINE = "penguins-predictor-00002", "penguins-predictor-00001"
EARLY = "taxi-predictor-00001"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    series = prometheus_server.Series()
    series.revision(CANARY, T0, T0 + 600, 15, ok_per_s=1.0, errors_per_s=0.02, latency_bucket_ms=100)
    series.revision(BASELINE, T0, T0 + 600, 15, ok_per_s=4.0, latency_bucket_ms=50)
    series.revision(EARLY, T0 - 300, T0 + 600, 15, ok_per_s=1.0)  # traffic before the window too
    url, process = prometheus_server.start(series, tmp_path_factory.mktemp("prometheus"))
    yield PrometheusAdapter(url)
    process.terminate()
    process.wait()


def test_requests_over_a_window_are_counted_by_revision_and_status_class(prometheus):
    found = prometheus.requests(NAMESPACE, [CANARY, BASELINE], T0, T0 + 600)

    assert sorted((r, c, round(n, 6)) for r, c, n in found) == [
        (BASELINE, "2xx", 2400.0), (BASELINE, "5xx", 0.0), (CANARY, "2xx", 600.0), (CANARY, "5xx", 12.0)]


def test_latency_percentiles_are_prometheus_histogram_quantiles(prometheus):
    # canary: all 612 answers in (50, 100] ms; baseline: all in (0, 50] ms
    assert prometheus.latency(NAMESPACE, [CANARY], 0.5, T0, T0 + 600) == pytest.approx(75.0)
    assert prometheus.latency(NAMESPACE, [CANARY], 0.99, T0, T0 + 600) == pytest.approx(99.5)
    assert prometheus.latency(NAMESPACE, [BASELINE], 0.99, T0, T0 + 600) == pytest.approx(49.5)


def test_a_revision_without_requests_has_no_latency_and_no_counts(prometheus):
    assert prometheus.latency(NAMESPACE, ["penguins-predictor-00009"], 0.99, T0, T0 + 600) is None
    assert prometheus.requests(NAMESPACE, ["penguins-predictor-00009"], T0, T0 + 600) == []


def test_the_timeline_has_a_point_per_step_of_at_least_a_minute(prometheus):
    counts, p99 = prometheus.timeline(NAMESPACE, [CANARY], T0, T0 + 600, 20)

    ok = next(points for labels, points in counts if labels["response_code_class"] == "2xx")
    assert [t for t, _ in ok] == [float(T0 + 60 * i) for i in range(1, 11)]
    assert {round(v, 6) for _, v in ok} == {60.0}
    assert {round(v, 6) for _, v in p99[0][1]} == {99.5}


def test_the_timeline_starts_one_step_into_the_window_not_before_it(prometheus):
    counts, p99 = prometheus.timeline(NAMESPACE, [EARLY], T0, T0 + 600, 20)

    [(labels, points)] = [(labels, points) for labels, points in counts if labels["response_code_class"] == "2xx"]
    assert points[0] == (float(T0 + 60), pytest.approx(60.0)) and len(points) == 10
    [(_, latencies)] = p99
    assert [t for t, _ in latencies] == [float(T0 + 60 * i) for i in range(1, 11)]


def test_a_query_prometheus_cannot_parse_is_an_error_with_its_type_and_message(prometheus):
    with pytest.raises(KfkitError, match=r"Prometheus refused 'sum by \(': bad_data: .*parse error"):
        prometheus.instant("sum by (", T0)


def test_an_address_with_a_trailing_slash_is_the_same_prometheus(prometheus):
    again = PrometheusAdapter(prometheus.url + "/")
    assert again.requests(NAMESPACE, [CANARY], T0, T0 + 600) == prometheus.requests(NAMESPACE, [CANARY], T0, T0 + 600)


def test_a_trailing_slash_never_doubles_the_api_path_a_strict_proxy_routes_on():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answer = PrometheusAdapter(f"http://127.0.0.1:{server.server_port}/strict/").instant("up", T0)
    finally:
        server.shutdown()
    assert answer == []


def test_an_https_address_is_taken():
    assert PrometheusAdapter("https://prometheus.monitoring:9090/").url == "https://prometheus.monitoring:9090"


class NotPrometheus(BaseHTTPRequestHandler):
    """What sits in front of a Prometheus sometimes answers instead of it."""

    answers = {"/proxy/api/v1/query": (502, b"<html>Bad Gateway</html>"), "/html/api/v1/query": (200, b"<html>"),
               "/list/api/v1/query": (200, b"[1, 2]"),
               "/strict/api/v1/query": (200, b'{"status": "success", "data": {"resultType": "vector", "result": []}}')}

    def do_GET(self):
        status, body = self.answers.get(self.path.split("?")[0], (404, b"404 page not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("prefix, message", [
    ("proxy", r"Prometheus at http://127.0.0.1:\d+/proxy answered 502 to 'up'"),
    ("html", r"Prometheus at http://127.0.0.1:\d+/html could not be read"),
    ("list", r"Prometheus refused 'up': not its JSON")])
def test_an_answer_that_is_not_prometheus_json_is_an_error_naming_the_address(prefix, message):
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(KfkitError, match=message):
            PrometheusAdapter(f"http://127.0.0.1:{server.server_port}/{prefix}").instant("up", T0)
    finally:
        server.shutdown()


def test_a_prometheus_that_never_answers_times_out():
    with socket.socket() as listening:  # accepts connections (the backlog) and never reads them
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        with pytest.raises(KfkitError, match="could not be read: timed out"):
            PrometheusAdapter(f"http://127.0.0.1:{listening.getsockname()[1]}", timeout_s=0.2).instant("up", T0)


def test_an_unreachable_prometheus_is_an_error_naming_its_address():
    with pytest.raises(KfkitError, match=r"Prometheus at http://127.0.0.1:9 could not be read"):
        PrometheusAdapter("http://127.0.0.1:9", timeout_s=5).instant("up", T0)


@pytest.mark.parametrize("url", ["prometheus:9090", "", "ftp://prometheus"])
def test_an_address_that_is_not_http_is_refused(url):
    with pytest.raises(ConfigError, match="prometheus_url must be the http"):
        PrometheusAdapter(url)


@pytest.mark.parametrize("name", ['a"} or vector(1) #', "", "a|b"])
def test_a_name_that_would_change_the_query_is_refused(name):
    with pytest.raises(ConfigError, match="not a Kubernetes name"):
        selector(NAMESPACE, [name])


def test_a_range_is_whole_seconds_and_a_sliced_one_at_least_a_minute():
    assert seconds(0, 600.2) == 601
    assert seconds(0, 0) == 1
    assert seconds(0, 600, 20) == 60
    assert seconds(0, 100, 2) == 60
    assert seconds(0, 6000, 20) == 300
