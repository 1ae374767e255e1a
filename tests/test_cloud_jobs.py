"""Long-running cloud jobs as GCPC runs them: gcp_resources at once, polling with backoff, cancel on SIGTERM.

Expected behaviour from google-cloud-pipeline-components 2.22 (installed here): the GcpResources proto
(proto/gcp_resources_pb2.py) for the file's format, and container/utils/execution_context.py for
cancellation (SIGTERM -> on_cancel -> exit status 0).
"""

import itertools
import json
import signal
import subprocess
import sys
import textwrap

from google.protobuf import json_format
from google_cloud_pipeline_components.proto.gcp_resources_pb2 import GcpResources

from kfkit.cloud_jobs import CloudJobs, bigquery_job_uri, poll_intervals, vertex_uri


def test_each_job_is_in_gcp_resources_before_it_is_polled(tmp_path):
    path = tmp_path / "out" / "gcp_resources"
    jobs = CloudJobs(str(path), sleep=lambda s: None)
    seen = []

    def done():
        seen.append(json.loads(path.read_text()))
        return True

    jobs.run("BigQueryJob", "https://b/1", done, None, "job 1")
    jobs.run("VertexLro", "https://v/2", done, None, "job 2")

    assert seen[0] == {"resources": [{"resourceType": "BigQueryJob", "resourceUri": "https://b/1"}]}
    assert len(seen[1]["resources"]) == 2
    parsed = json_format.Parse(path.read_text(), GcpResources())
    assert [(r.resource_type, r.resource_uri) for r in parsed.resources] == [("BigQueryJob", "https://b/1"),
                                                                              ("VertexLro", "https://v/2")]


def test_a_step_that_starts_no_job_writes_an_empty_gcp_resources(tmp_path):
    CloudJobs(str(tmp_path / "gcp_resources"))

    text = (tmp_path / "gcp_resources").read_text()

    assert json.loads(text) == {} and json_format.Parse(text, GcpResources()) == GcpResources()


def test_polling_backs_off_from_one_second_doubling_to_thirty():
    assert list(itertools.islice(poll_intervals(), 8)) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_the_resource_uris_are_the_ones_gcpc_writes():
    assert bigquery_job_uri("p", "job_1", "EU") == "https://www.googleapis.com/bigquery/v2/projects/p/jobs/job_1?location=EU"
    assert vertex_uri("us-central1", "projects/p/locations/us-central1/operations/7") == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/operations/7")


def test_a_failed_cancel_does_not_stop_the_other_cancels():
    jobs = CloudJobs()
    cancelled = []

    def broken():
        raise RuntimeError("503 backend")

    jobs.started("BigQueryJob", "a", broken)
    jobs.started("BigQueryJob", "b", lambda: cancelled.append("b"))
    jobs.started("BigQueryJob", "c", lambda: cancelled.append("c"))
    jobs.finished("c")

    assert jobs.cancel_running() == ["a", "b"]
    assert cancelled == ["b"]


def test_sigterm_cancels_the_running_job_and_ends_the_step_with_status_0(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from kfkit.cloud_jobs import CloudJobs
        with CloudJobs({str(tmp_path / 'gcp_resources')!r}) as jobs:
            def done():
                print("polling", flush=True)
                return False
            jobs.run("BatchPredictionJob", "https://v/job/1", done, lambda: print("cancel sent", flush=True), "job")
        print("not reached", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "polling\n"  # the job exists and is being polled

    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)

    assert child.returncode == 0
    assert out == "cancel sent\n"
    assert "cancelled https://v/job/1" in err
    assert json.loads((tmp_path / "gcp_resources").read_text())["resources"][0]["resourceUri"] == "https://v/job/1"


def test_the_sigterm_handler_is_put_back_after_the_step(tmp_path):
    before = signal.getsignal(signal.SIGTERM)

    with CloudJobs():
        inside = signal.getsignal(signal.SIGTERM)

    assert inside != before and signal.getsignal(signal.SIGTERM) == before


def test_a_bigquery_job_is_cancelled_through_its_own_cancel_while_it_runs(warehouse, tmp_path):
    from kfkit.adapters.bigquery import BigQueryAdapter
    from tests.bigquery_local import LocalBigQuery

    client = LocalBigQuery(warehouse, tmp_path, polls_until_done=3)
    jobs = CloudJobs(sleep=lambda seconds: jobs.cancel_running())  # the run is cancelled while it polls
    adapter = BigQueryAdapter("my-proj", client=client, jobs=jobs)

    adapter.run_query("SELECT 1 AS x", job_id_prefix="kfkit_test_")

    assert ("cancel", "kfkit_test_0") in client.calls


def test_a_vertex_operation_is_cancelled_through_its_own_cancel_while_it_runs():
    from kfkit.adapters.vertex import VertexAdapter
    from tests.test_vertex_adapter import Recorder, fake_aiplatform

    rec = Recorder()
    jobs = CloudJobs(sleep=lambda seconds: jobs.cancel_running())
    vertex = VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, polls=2), jobs=jobs)

    vertex.upload_version(display_name="m", artifact_uri="gs://b/m", serving_image="img", aliases=[], labels={},
                          metrics={}, task_id="t", make_default=True)

    assert ("Operation.cancel", "projects/p/locations/us-central1/operations/1") in rec.calls


def test_polling_sleeps_the_backoff_between_checks_and_logs_what_is_still_running(caplog):
    slept, answers = [], iter([False, False, False, True])
    jobs = CloudJobs(sleep=slept.append)

    with caplog.at_level("INFO", logger="kfkit.cloud_jobs"):
        jobs.run("BigQueryJob", "https://b/7", lambda: next(answers), None, "BigQuery query job 7")

    assert slept == [1.0, 2.0, 4.0]
    still = [m for m in caplog.messages if "still running" in m]
    assert len(still) == 3 and still[0].startswith("BigQuery query job 7 still running after 0s; next check in 1s")
    assert still[2].endswith("next check in 4s")
    assert "started BigQueryJob https://b/7" in caplog.messages


def test_a_finished_job_is_no_longer_cancelled():
    jobs = CloudJobs(sleep=lambda s: None)
    cancelled = []

    jobs.run("VertexLro", "https://v/1", lambda: True, lambda: cancelled.append(1), "op 1")

    assert jobs.cancel_running() == [] and cancelled == []


def test_gcp_resources_is_written_whole_where_its_folders_do_not_exist_yet(tmp_path):
    path = tmp_path / "a" / "b" / "gcp_resources"

    CloudJobs(str(path)).started("BigQueryJob", "https://b/1")

    assert json.loads(path.read_text()) == {"resources": [{"resourceType": "BigQueryJob", "resourceUri": "https://b/1"}]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["gcp_resources"]  # no temporary file left


def test_the_sigterm_handler_cancels_logs_and_exits_with_status_0(caplog):
    exits, cancelled = [], []
    jobs = CloudJobs(exit=exits.append)
    jobs.started("BatchPredictionJob", "https://v/b/1", lambda: cancelled.append("b1"))
    jobs.started("BigQueryJob", "https://b/2", lambda: (_ for _ in ()).throw(RuntimeError("503 backend")))

    with caplog.at_level("INFO", logger="kfkit.cloud_jobs"):
        jobs._on_sigterm(signal.SIGTERM, None)

    assert exits == [0] and cancelled == ["b1"]
    assert "SIGTERM received: the pipeline run is being cancelled" in caplog.messages
    assert "cancelled https://v/b/1" in caplog.messages
    assert "could not cancel https://b/2: 503 backend" in caplog.messages
