"""`kfkit submit --kfp-host` through the real kfp.Client and its real transport, against a
protocol-level fake of the Kubeflow Pipelines v2beta1 API with a multi-user Kubeflow's auth proxy in
front (tests/kfp_api.py: request bodies checked against the API's own models, the spec parsed
strictly as KFP's IR, namespaces authorized as the API server does)."""

import itertools
import socket

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kfkit import cli
from kfkit.adapters import kfp_backend
from kfkit.adapters.kfp_backend import KfpTarget
from kfkit.errors import ConfigError, KfkitError
from kfkit.runs import submit
from tests.kfp_api import KfpApi

TASKS_BLESSED = {"bigquery-query-to-dataset": "SUCCEEDED", "train-tensorflow-model": "SUCCEEDED",
                 "evaluate-model": "SUCCEEDED", "register-model": "SUCCEEDED", "deploy-model": "SUCCEEDED"}


def _submit(api, target=None, **kwargs):
    lines = []
    run_id = submit.submit_kfp("training", kwargs.pop("values", {"epochs": 2}), target or KfpTarget(api.url),
                               echo=lines.append, sleep=lambda s: None, **kwargs)
    return run_id, lines


def _created_run(api) -> dict:
    return next(r["body"] for r in api.requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs")


def _all_dag_tasks(spec: dict):
    parsed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    for component in [parsed.root, *parsed.components.values()]:
        yield from component.dag.tasks.values()


def test_a_standalone_kfp_gets_the_run_with_pipeline_root_and_service_account():
    with KfpApi() as api:
        run_id, lines = _submit(api, experiment="churn", pipeline_root="minio://mlpipeline/v2/artifacts",
                                service_account="pipeline-runner")

        body = _created_run(api)
    assert run_id in api.runs
    assert body["runtime_config"] == {"pipeline_root": "minio://mlpipeline/v2/artifacts", "parameters": {"epochs": 2}}
    assert body["service_account"] == "pipeline-runner"
    assert [e["display_name"] for e in api.experiments.values()] == ["churn"]
    assert lines == [f"submitted to {api.url}: run {run_id}"]


def test_no_cache_turns_caching_off_in_every_dag_not_only_the_root():
    with KfpApi() as api:
        _submit(api, enable_caching=False)
        spec = _created_run(api)["pipeline_spec"]

    tasks = list(_all_dag_tasks(spec))
    # the training pipeline's gated steps (register, deploy) live in sub-DAGs of dsl.If
    assert len(tasks) > len(spec["root"]["dag"]["tasks"])
    assert [t.task_info.name for t in tasks if t.caching_options.enable_cache] == []


def test_without_no_cache_the_compiled_caching_reaches_the_server_unchanged():
    with KfpApi() as api:
        _submit(api)
        spec = _created_run(api)["pipeline_spec"]

    assert any(t.caching_options.enable_cache for t in _all_dag_tasks(spec))


def test_wait_follows_the_tasks_and_ends_with_the_runs_decision():
    script = [("RUNNING", {"evaluate-model": "RUNNING"}), ("RUNNING", {"evaluate-model": "SUCCEEDED"}),
              ("SUCCEEDED", TASKS_BLESSED)]
    with KfpApi(script=script) as api:
        run_id, lines = _submit(api, wait=True)

    changes = [line.split()[1:] for line in lines[1:-3]]
    assert changes[:2] == [["evaluate-model", "RUNNING"], ["evaluate-model", "SUCCEEDED"]]
    assert lines[-3:] == [f"run {run_id} succeeded", "Tasks: 5 succeeded, 0 skipped",
                          "Outcome: BLESSED: the model was registered and deployed"]


def test_wait_on_a_model_that_is_not_blessed_says_so():
    tasks = {**TASKS_BLESSED, "register-model": "SKIPPED", "deploy-model": "SKIPPED"}
    with KfpApi(script=[("SUCCEEDED", tasks)]) as api:
        _, lines = _submit(api, wait=True)

    assert lines[-1].startswith("Outcome: NOT BLESSED")


@pytest.mark.parametrize("state", ["FAILED", "CANCELED", "SKIPPED"])
def test_wait_exits_non_zero_for_a_run_that_did_not_succeed(state, capsys, monkeypatch):
    monkeypatch.setattr(kfp_backend, "poll_intervals", lambda: itertools.repeat(0.0))
    tasks = {"evaluate-model": "FAILED"} if state == "FAILED" else {}
    with KfpApi(script=[("RUNNING", {}), (state, tasks)]) as api:
        code = cli.main(["submit", "training", "--kfp-host", api.url, "--wait", "--param", "epochs=2"])

    err = capsys.readouterr().err
    assert code == 1
    assert f"ended {state}" in err and err.startswith("kfkit: error: run ")
    if state == "FAILED":
        assert "task evaluate-model: evaluate-model exited with code 1" in err


def test_ctrl_c_while_waiting_terminates_the_run_when_the_user_says_yes():
    class Interrupting:
        def __init__(self):
            self.calls = 0

        def __call__(self, seconds):
            raise KeyboardInterrupt

    with KfpApi(script=[("RUNNING", {})]) as api:
        with pytest.raises(KfkitError, match="asked to terminate"):
            submit.submit_kfp("training", {}, KfpTarget(api.url), wait=True, echo=lambda *_: None,
                              sleep=Interrupting(), ask=lambda prompt: "y")

        assert api.terminated == list(api.runs)


def test_ctrl_c_while_waiting_leaves_the_run_alone_when_the_user_says_no():
    def interrupt(seconds):
        raise KeyboardInterrupt

    with KfpApi(script=[("RUNNING", {})]) as api:
        with pytest.raises(KfkitError, match="left running"):
            submit.submit_kfp("training", {}, KfpTarget(api.url), wait=True, echo=lambda *_: None,
                              sleep=interrupt, ask=lambda prompt: "")

        assert api.terminated == []


# --- multi-user Kubeflow: namespace and credentials ---------------------------------------------------

def _multi_user(**kwargs):
    return KfpApi(multi_user=True, tokens={"tok-alice": "alice@example.com"},
                  cookies={"oauth2_proxy_kubeflow=s3ss10n": "alice@example.com"},
                  namespaces={"alice@example.com": {"team-a"}}, **kwargs)


def test_a_bearer_token_from_a_file_reaches_the_api_and_the_run_lands_in_the_namespace(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-alice\n")
    with _multi_user() as api:
        run_id, _ = _submit(api, KfpTarget(api.url, namespace="team-a", token_file=str(token)), experiment="churn")

        sent = [r for r in api.requests if r["path"].startswith("/apis/")]
    assert all({k.lower(): v for k, v in r["headers"].items()}.get("authorization") == "Bearer tok-alice" for r in sent)
    assert [e["namespace"] for e in api.experiments.values()] == ["team-a"]
    assert run_id in api.runs


def test_a_dashboard_session_cookie_from_a_file_is_sent_as_the_cookie(tmp_path):
    cookie = tmp_path / "session"
    cookie.write_text("oauth2_proxy_kubeflow=s3ss10n")
    with _multi_user() as api:
        run_id, _ = _submit(api, KfpTarget(api.url, namespace="team-a", cookie_file=str(cookie)))

    assert run_id in api.runs


def test_the_in_cluster_token_is_read_from_kfps_documented_path_variable(tmp_path, monkeypatch):
    token = tmp_path / "kfp-token"
    token.write_text("tok-alice")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with _multi_user() as api:
        run_id, _ = _submit(api, KfpTarget(api.url, namespace="team-a", in_cluster=True))

        sent = [r for r in api.requests if r["path"] == "/apis/v2beta1/runs"]
    assert run_id in api.runs and {k.lower(): v for k, v in sent[0]["headers"].items()}["authorization"] == "Bearer tok-alice"


def test_no_credential_on_a_multi_user_kubeflow_is_refused_naming_the_login_and_the_flags(capsys):
    with _multi_user() as api:
        code = cli.main(["submit", "training", "--kfp-host", api.url, "--namespace", "team-a"])

        assert api.runs == {}
    err = capsys.readouterr().err
    assert code == 1 and "\n" not in err.rstrip("\n")
    assert f"kfkit: error: Kubeflow Pipelines at {api.url} redirected to /dex/auth" in err
    assert "--kfp-token-file, --kfp-cookie-file or --kfp-in-cluster-token" in err


def test_a_token_the_proxy_cannot_verify_is_reported_with_its_status_and_words(tmp_path):
    token = tmp_path / "token"
    token.write_text("expired")
    with _multi_user() as api:
        with pytest.raises(ConfigError, match=r"answered 401 Unauthorized: Jwt verification fails"):
            _submit(api, KfpTarget(api.url, namespace="team-a", token_file=str(token)))


def test_a_multi_user_kubeflow_without_namespace_is_refused_before_anything_is_created(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-alice")
    with _multi_user() as api:
        with pytest.raises(ConfigError, match=r"multi-user Kubeflow: --namespace \(your profile's namespace\) is required"):
            _submit(api, KfpTarget(api.url, token_file=str(token)))

        assert api.experiments == {} and api.runs == {}


def test_a_namespace_the_user_may_not_use_is_the_api_servers_403_in_one_line(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("tok-alice")
    with _multi_user() as api:
        code = cli.main(["submit", "training", "--kfp-host", api.url, "--namespace", "team-b",
                         "--kfp-token-file", str(token)])

    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"kfkit: error: Kubeflow Pipelines at {api.url} answered 403")
    assert "User 'alice@example.com' is not authorized" in err and "namespace team-b" in err


# --- errors a person can read ------------------------------------------------------------------------

def test_a_host_answering_with_the_dashboard_page_is_said_to_be_html_not_the_api(capsys):
    with KfpApi(dashboard=True) as api:
        code = cli.main(["submit", "training", "--kfp-host", api.url])

    err = capsys.readouterr().err
    assert code == 1 and "answered with an HTML page, not the Kubeflow Pipelines API" in err


def test_a_refused_connection_is_one_line_naming_the_host(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    code = cli.main(["submit", "training", "--kfp-host", f"http://127.0.0.1:{port}"])

    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"kfkit: error: cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}")
    assert "Traceback" not in err and "refused" in err.lower()


def test_a_host_that_accepts_but_never_answers_is_bounded_by_the_reachability_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"

        with pytest.raises(ConfigError, match=r"did not answer within 0.2 s"):
            kfp_backend.check_reachable(KfpTarget(host, timeout_s=0.2))


@pytest.mark.parametrize("status", [400, 500])
def test_an_api_error_on_create_is_one_line_with_the_status_and_the_servers_message(status, capsys):
    with KfpApi(failure=(status, "Internal error: failed to create a run: db is down")) as api:
        code = cli.main(["submit", "training", "--kfp-host", api.url])

    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"answered {status}" in err and "failed to create a run: db is down" in err


def test_a_server_that_answers_without_a_run_id_is_not_reported_as_submitted():
    class Client:
        def create_run_from_pipeline_package(self, path, **kwargs):
            return type("Result", (), {"run_id": None})()

    with pytest.raises(KfkitError, match="answered without a run id"):
        submit.submit_kfp("training", {}, KfpTarget("http://kfp.example"), client=Client(), echo=lambda *_: None)


# --- every flag honoured or refused by name ----------------------------------------------------------

@pytest.mark.parametrize("flags, named", [
    (["--project", "p"], "--project"),
    (["--region", "europe-west4"], "--region"),
    (["--network", "projects/1/global/networks/n"], "--network"),
    (["--encryption-key", "k"], "--encryption-key"),
    (["--labels", "team=a"], "--labels"),
])
def test_a_vertex_only_flag_with_kfp_host_is_an_error_naming_it_and_the_backend(flags, named, capsys):
    code = cli.main(["submit", "training", "--kfp-host", "http://127.0.0.1:9", *flags])

    err = capsys.readouterr().err
    assert code == 1 and f"kfkit: error: {named} does not apply to Kubeflow Pipelines (--kfp-host)" in err


@pytest.mark.parametrize("flags, named", [
    (["--namespace", "team-a"], "--namespace"),
    (["--experiment", "churn"], "--experiment"),
    (["--kfp-in-cluster-token"], "--kfp-in-cluster-token"),
])
def test_a_kubeflow_only_flag_on_vertex_is_an_error_naming_it(flags, named, capsys):
    code = cli.main(["submit", "training", "--project", "p", "--pipeline-root", "gs://b/r", *flags])

    err = capsys.readouterr().err
    assert code == 1 and f"kfkit: error: {named} does not apply to Vertex AI Pipelines" in err


def test_two_credentials_at_once_are_refused_naming_both():
    with pytest.raises(ConfigError, match="one credential, got --kfp-token-file and --kfp-cookie-file"):
        KfpTarget("http://kfp", token_file="a", cookie_file="b")


def test_without_caching_leaves_the_given_template_alone(tmp_path):
    from kfkit.runs.compile import compile_pipeline, without_caching

    source = compile_pipeline("training", tmp_path / "training.yaml")
    before = source.read_text()
    out = without_caching(source, tmp_path / "no-cache.yaml")

    assert source.read_text() == before
    spec = yaml.safe_load(out.read_text())
    assert all(not t.caching_options.enable_cache for t in _all_dag_tasks(spec))
