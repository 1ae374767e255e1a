"""The kfkit command line. Heavy libraries (KFP, TensorFlow, cloud SDKs) load only in the command
that needs them, so `kfkit --help` answers at once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from kfkit import __version__
from kfkit.errors import ConfigError

EPILOG = """examples:
  kfkit run training --local                       train on the embedded backend (penguins)
  kfkit run training --local --param label_column=species --params my.yaml
  kfkit run training --local --runner docker       each step in its kfkit image on a Docker engine
  kfkit compile --output build/                    every pipeline and component spec as YAML
  kfkit data synth synthetic.rows --rows 100000    synthetic rows into the local warehouse
  kfkit data tables                                what the local warehouse holds
  kfkit serve --endpoint penguins                  serve the deployed model on 127.0.0.1:8080
  kfkit rollback --endpoint penguins               restore the previous traffic split (--undo: put it back)
  kfkit promote --endpoint penguins                give the canary 100% of the traffic
  kfkit canary status --endpoint penguins          a canary's figures so far against the baseline
  kfkit log-sink --host 0.0.0.0                    where KServe's inference logger posts (canary on KServe)
"""


def _compile(args) -> int:
    # image settings must be in place before component modules are imported
    if args.image_registry:
        os.environ["KFKIT_IMAGE_REGISTRY"] = args.image_registry
    if args.image_tag:
        os.environ["KFKIT_IMAGE_TAG"] = args.image_tag
    if args.image_digests:
        from kfkit.config import image_digests

        image_digests(args.image_digests)  # refuse a bad file before compiling anything
        os.environ["KFKIT_IMAGE_DIGESTS"] = args.image_digests
    from kfkit import catalog
    from kfkit.runs.compile import compile_all

    if args.check:
        problems = catalog.check()
        for problem in problems:
            print(problem, file=sys.stderr)
        print("component catalog is in sync" if not problems else f"{len(problems)} problem(s)", file=sys.stderr)
        return 1 if problems else 0
    started = time.perf_counter()
    written = compile_all(Path(args.output), _step_env(args))
    # the committed catalog names the default images of this version: a build for a registry
    # (--image-registry/--image-tag, or their environment variables) leaves it alone
    custom_images = any(os.environ.get(k) for k in ("KFKIT_IMAGE_REGISTRY", "KFKIT_IMAGE_TAG", "KFKIT_IMAGE_DIGESTS"))
    if (catalog.REPO / "pyproject.toml").exists() and not args.no_catalog and not custom_images:
        written += catalog.write()
    for path in written:
        print(path)
    print(f"compiled {len(written)} specs in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


def _run(args) -> int:
    values = _values(args)
    if not args.local:
        print("kfkit run needs --local (run on this machine); to run on Vertex AI or a Kubeflow "
              "backend use `kfkit submit`", file=sys.stderr)
        return 2
    from kfkit.runs.local import PipelineFailed, run_local

    try:
        summary = run_local(args.pipeline, values, args.local_root, verbose=args.verbose_run or args.verbose,
                            runner=args.runner)
    except PipelineFailed as exc:
        from kfkit.runs.outcome import render

        print(render(exc.summary.outcome), file=sys.stderr)
        return 1
    print(summary.render(steps=args.verbose_run or args.verbose))
    return 0


def _runs(args) -> int:
    from kfkit.config import local_root
    from kfkit.runs.outcome import SUMMARY_FILE, render

    runs = local_root(args.local_root) / "runs"
    summaries = sorted(runs.glob(f"*/{SUMMARY_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if runs.exists() else []
    if args.action == "show":
        wanted = [p for p in summaries if p.parent.name == args.run or p.parent.name.endswith(args.run or "")]
        if not args.run or not wanted:
            raise ConfigError(f"no local run {args.run!r}; `kfkit runs` lists them")
        print(render(json.loads(wanted[0].read_text())))
        return 0
    if not summaries:
        print(f"no local runs under {runs} yet: kfkit run training --local")
    rows = []
    for path in summaries[: args.limit]:
        result = json.loads(path.read_text())
        failure = result.get("failure") or {}
        why = ""
        if failure:  # the failed step and the first line of what it said
            first = next((line.strip() for line in str(failure.get("message") or "").splitlines() if line.strip()), "")
            why = f"{failure.get('step') or '?'}: {first}"[:100]
        rows.append((result["run_id"], result["status"], result.get("decision") or "", f"{result['seconds']:.1f}s", why))
    if rows:
        header = ("RUN", "STATUS", "DECISION", "TIME", "WHY IT FAILED" if any(r[4] for r in rows) else "")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                             row[3].rjust(widths[3]), row[4]]).rstrip())
    return 0


def _data(args) -> int:
    from kfkit.warehouse.local import LocalWarehouse

    warehouse = LocalWarehouse(args.local_root)
    if args.data_command == "load-samples":
        created = warehouse.ensure_sample_data()
        print("loaded: " + (", ".join(created) if created else "nothing new"))
    elif args.data_command == "tables":
        warehouse.ensure_sample_data()
        for table in warehouse.tables():
            print(table)
    elif args.data_command == "synth":
        from kfkit.warehouse import synthetic

        started = time.perf_counter()
        name = synthetic.write_to_warehouse(warehouse, args.table, args.rows, numeric=args.numeric,
                                            categorical=args.categorical, seed=args.seed, task=args.task,
                                            shift=args.shift, null_fraction=args.null_fraction)
        print(f"wrote {args.rows} rows to {name} in {time.perf_counter() - started:.1f}s")
    elif args.data_command == "load":
        from kfkit.warehouse.local import load_file

        name = load_file(warehouse, args.table, args.path)
        print(f"loaded {args.path} into {name}")
    return 0


def _step_env(args) -> dict[str, str]:
    from kfkit.errors import ConfigError

    env = {}
    for item in args.step_env:
        name, sep, value = item.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigError(f"--step-env takes NAME=VALUE with NAME a variable name, got {item!r}")
        env[name] = value
    return env


def _values(args) -> dict:
    from kfkit import params as params_mod

    values = {}
    if args.params:
        values.update(params_mod.load_file(args.params))
    values.update(params_mod.parse_assignments(args.param))
    return values


VERTEX_ONLY = (("--project", "project"), ("--region", "region"), ("--network", "network"),
               ("--encryption-key", "encryption_key"), ("--labels", "labels"))
KFP_ONLY = (("--experiment", "experiment"), ("--namespace", "namespace"), ("--kfp-token-file", "kfp_token_file"),
            ("--kfp-cookie-file", "kfp_cookie_file"), ("--kfp-in-cluster-token", "kfp_in_cluster_token"))


def _refuse_flags(args, flags, backend: str) -> None:
    from kfkit.errors import ConfigError

    given = [flag for flag, attr in flags if getattr(args, attr, None)]
    if given:
        raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {backend}")


def _vertex_submission(args):
    from kfkit.adapters.vertex_pipelines import VertexSubmission
    from kfkit.errors import ConfigError
    from kfkit.runs.submit import parse_labels

    _refuse_flags(args, KFP_ONLY, "Vertex AI Pipelines (they are for Kubeflow Pipelines, with --kfp-host)")
    missing = [flag for flag, value in (("--project", args.project), ("--pipeline-root", args.pipeline_root)) if not value]
    if missing:
        raise ConfigError(f"submitting to Vertex AI needs {' and '.join(missing)} (or --kfp-host for Kubeflow Pipelines)")
    return VertexSubmission(project=args.project, region=args.region or "us-central1", pipeline_root=args.pipeline_root,
                            service_account=args.service_account or "", network=args.network or "",
                            encryption_key=args.encryption_key or "", labels=parse_labels(args.labels),
                            enable_caching=False if args.no_cache else None)


def _submit(args) -> int:
    from kfkit.runs import submit

    values = _values(args)
    if args.kfp_host:
        from kfkit.adapters.kfp_backend import KfpTarget

        _refuse_flags(args, VERTEX_ONLY, "Kubeflow Pipelines (--kfp-host); they are for Vertex AI Pipelines")
        target = KfpTarget(host=args.kfp_host, namespace=args.namespace or "", token_file=args.kfp_token_file or "",
                           cookie_file=args.kfp_cookie_file or "", in_cluster=args.kfp_in_cluster_token)
        submit.submit_kfp(args.pipeline, values, target, experiment=args.experiment or "", template=args.template,
                          enable_caching=False if args.no_cache else None, pipeline_root=args.pipeline_root or "",
                          service_account=args.service_account or "", wait=args.wait, step_env=_step_env(args))
        return 0
    submit.submit_vertex(args.pipeline, values, _vertex_submission(args), template=args.template, wait=args.wait,
                         step_env=_step_env(args))
    return 0


def _schedule(args) -> int:
    from kfkit.runs import submit

    submit.schedule_vertex(args.pipeline, _values(args), _vertex_submission(args), args.cron, template=args.template,
                           step_env=_step_env(args))
    return 0


def _serve(args) -> int:
    from kfkit.serving.server import serve

    serve(endpoint=args.endpoint, local_root=args.local_root, model_dir=args.model_dir, host=args.host,
          port=args.port, log_sample_rate=args.log_sample_rate, max_connections=args.max_connections,
          token_file=args.token_file, max_connections_per_client=args.max_connections_per_client,
          model_name=args.model_name, workers=args.workers, intra_op_threads=args.intra_op_threads,
          log_access=not args.no_access_log, log_limits={"max_file_bytes": int(args.log_max_file_mb * 1024 * 1024),
                      "max_total_bytes": int(args.log_max_total_mb * 1024 * 1024),
                      "max_age_days": args.log_max_age_days})
    return 0


def _endpoints(args) -> int:
    from kfkit.serving.endpoints import LocalEndpoints, describe

    endpoints = LocalEndpoints(args.local_root)
    names = endpoints.names()
    if not names:
        print("no local endpoints yet: run the training pipeline (its deploy step creates one)")
    for name in names:
        print(describe(endpoints.load(name)))
    return 0


def _rollback(args) -> int:
    if args.backend == "kserve":
        from kfkit.adapters.kserve import KServeAdapter, describe

        print("rolled back: " + describe(KServeAdapter(args.namespace).rollback(args.endpoint)))
        return 0
    if args.backend == "vertex":
        from kfkit.adapters.vertex import VertexAdapter

        split = VertexAdapter(args.project, args.region).rollback(args.endpoint)
        print(f"endpoint {args.endpoint}: traffic split restored to {split}")
        return 0
    from kfkit.serving.endpoints import LocalEndpoints, describe

    endpoints = LocalEndpoints(args.local_root)
    if args.undo:
        print("rollback undone: " + describe(endpoints.undo_rollback(args.endpoint)))
    else:
        print("restored: " + describe(endpoints.rollback(args.endpoint)))
    return 0


def _canary(args) -> int:
    from kfkit.components.canary.analysis import Thresholds
    from kfkit.components.canary.canary import analyze_canary, status_lines

    result = analyze_canary(args.endpoint, backend=args.backend, local_root=args.local_root, window_seconds=0,
                            act=False, thresholds=Thresholds(min_requests=args.min_requests), project=args.project,
                            location=args.region, request_logging_table=args.request_logging_table,
                            bigquery_location=args.bigquery_location, namespace=args.namespace,
                            prometheus_url=args.prometheus_url, request_logger_url=args.request_logger_url)
    print("\n".join(status_lines(result)))
    return 0


def _log_sink(args) -> int:
    from kfkit.serving.log_sink import make_http_server

    make_http_server(local_root=args.local_root, services=args.inference_service, host=args.host,
                     port=args.port, token_file=args.token_file,
                     max_connections_per_client=args.max_connections_per_client).run()
    return 0


def _promote(args) -> int:
    if args.backend == "kserve":
        from kfkit.adapters.kserve import KServeAdapter, describe

        print("promoted: " + describe(KServeAdapter(args.namespace).promote(args.endpoint)))
        return 0
    if args.backend == "vertex":
        from kfkit.adapters.vertex import VertexAdapter

        vertex = VertexAdapter(args.project, args.region)
        chosen = args.deployed_model_id or max(vertex.endpoint_state(args.endpoint)["deployed_models"],
                                               key=lambda m: m["deployed_at"])["id"]
        print(f"endpoint {args.endpoint}: traffic split now {vertex.promote(args.endpoint, chosen)}")
        return 0
    from kfkit.serving.endpoints import LocalEndpoints, describe

    print("promoted: " + describe(LocalEndpoints(args.local_root).promote(args.endpoint, args.deployed_model_id)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfkit", description="Reusable KFP components and pipelines: BigQuery to a monitored "
        "model on Vertex AI, or on this machine with the embedded backend.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kfkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("compile", help="write every pipeline and component spec to YAML")
    p.add_argument("--output", default="build", help="output directory (default: build)")
    p.add_argument("--image-registry", help="registry of the kfkit images, e.g. us-docker.pkg.dev/PROJECT/REPO")
    p.add_argument("--image-tag", help="tag of the kfkit images (default: the kfkit version)")
    p.add_argument("--image-digests", metavar="FILE",
                   help='JSON {"kfkit-runtime": "sha256:...", ...}: name each image by digest (a release)')
    p.add_argument("--step-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable for every step of the compiled pipelines (not the component specs)")
    p.add_argument("--check", action="store_true", help="only check that the committed component specs, "
                   "docs/components.md and the interface lock match the code")
    p.add_argument("--no-catalog", action="store_true", help="do not rewrite components/*/component.yaml and docs")
    p.set_defaults(func=_compile)

    from kfkit import pipelines  # light: only the registry of names

    PIPELINE_HELP = ("one of kfkit's pipelines (" + ", ".join(sorted(pipelines.PIPELINES)) + "), any pipeline "  # noqa: N806
                     "function as path/to/file.py:FUNCTION, or a compiled pipeline.yaml")

    p = sub.add_parser("run", help="run a pipeline (on this machine with --local)")
    p.add_argument("pipeline", help=PIPELINE_HELP)
    p.add_argument("--local", action="store_true", help="run with kfp.local on the embedded backend")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter (repeatable); values are read as YAML")
    p.add_argument("--params", metavar="FILE", help="YAML file of pipeline parameters")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.add_argument("--runner", choices=["subprocess", "docker"], default="subprocess",
                   help="where each step runs: a subprocess here (default), or its kfkit image on a Docker engine")
    p.add_argument("--verbose", dest="verbose_run", action="store_true",
                   help="print every step's full output as it comes (default: logs go to <run dir>/logs/)")
    p.set_defaults(func=_run)

    p = sub.add_parser("runs", help="recent local runs and their outcomes; `runs show RUN` prints one again")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("run", nargs="?", help="run id (or its end) for `show`")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.set_defaults(func=_runs)

    def cloud_flags(p):
        p.add_argument("pipeline", help=PIPELINE_HELP)
        p.add_argument("--project", help="Google Cloud project")
        p.add_argument("--region", help="Vertex AI region (default: us-central1)")
        p.add_argument("--pipeline-root", help="where the pipeline's artifacts go (gs:// on Vertex AI; on Kubeflow "
                       "Pipelines, e.g. minio:// or s3://; default: the cluster's)")
        p.add_argument("--service-account", help="identity the pipeline's steps run as (a Google service account on "
                       "Vertex AI, a Kubernetes service account on Kubeflow Pipelines)")
        p.add_argument("--network", help="VPC network (projects/NUMBER/global/networks/NAME)")
        p.add_argument("--encryption-key", help="Cloud KMS key for CMEK")
        p.add_argument("--labels", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--step-env", action="append", default=[], metavar="NAME=VALUE",
                       help="environment variable for every step, e.g. MLFLOW_TRACKING_URI=http://mlflow.kubeflow:5000")
        p.add_argument("--no-cache", action="store_true", help="disable step caching")
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        p.add_argument("--params", metavar="FILE", help="YAML file of pipeline parameters")
        p.add_argument("--template", help="a compiled template: a file, or an Artifact Registry URL "
                       "https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE:TAG (default: compile now)")

    p = sub.add_parser(
        "submit", help="submit a pipeline to Vertex AI Pipelines or a Kubeflow Pipelines backend",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile a kfkit pipeline and submit it as a Vertex AI PipelineJob (default) or to a\n"
                    "Kubeflow Pipelines backend (--kfp-host). Parameters are checked against the pipeline\n"
                    "before anything is sent. On Google Cloud pass backend=bigquery and the project as\n"
                    "pipeline parameters: the steps then use BigQuery and the Vertex AI Model Registry.\n"
                    "Authentication: application-default credentials (gcloud auth application-default\n"
                    "login, or the service account of the machine); --service-account is the identity the\n"
                    "pipeline's steps run as.",
        epilog="example (Vertex AI):\n"
               "  kfkit submit training --project my-proj --region us-central1 \\\n"
               "    --pipeline-root gs://my-bucket/pipeline-root \\\n"
               "    --service-account pipelines@my-proj.iam.gserviceaccount.com \\\n"
               "    --param backend=bigquery --param project=my-proj --param location=US \\\n"
               "    --param query='SELECT * FROM `my-proj.sales.features`' --param label_column=churned --wait\n"
               "example (Kubeflow Pipelines, multi-user):\n"
               "  kfkit submit training --kfp-host https://kubeflow.example.com/pipeline --namespace team-a \\\n"
               "    --kfp-cookie-file ~/.kfp-session --experiment churn --wait")
    cloud_flags(p)
    p.add_argument("--wait", action="store_true", help="show task states until the run ends, then its decision; "
                   "non-zero exit when it failed, was canceled or skipped (Ctrl-C asks whether to terminate it)")
    p.add_argument("--kfp-host", help="Kubeflow Pipelines API URL (instead of Vertex AI)")
    p.add_argument("--experiment", help="Kubeflow Pipelines experiment name")
    p.add_argument("--namespace", help="Kubeflow Pipelines: your profile's namespace (required by a multi-user Kubeflow)")
    p.add_argument("--kfp-token-file", metavar="FILE", help="Kubeflow Pipelines: a bearer token in this file "
                   "(an OIDC id token, or a Kubernetes service account token)")
    p.add_argument("--kfp-cookie-file", metavar="FILE", help="Kubeflow Pipelines: the dashboard's session cookie, "
                   "NAME=VALUE, in this file (e.g. oauth2_proxy_kubeflow=...)")
    p.add_argument("--kfp-in-cluster-token", action="store_true", help="Kubeflow Pipelines, from a pod: its projected "
                   "service account token ($KF_PIPELINES_SA_TOKEN_PATH or /var/run/secrets/kfp/token)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("schedule", help="run a pipeline on Vertex AI on a cron schedule (PipelineJobSchedule)")
    cloud_flags(p)
    p.add_argument("--cron", required=True, help='cron expression, e.g. "0 6 * * *" (optionally "TZ=Europe/Paris 0 6 * * *")')
    p.set_defaults(func=_schedule)

    p = sub.add_parser("serve", help="serve a local endpoint (or one model) with Vertex's prediction contract")
    p.add_argument("--endpoint", default="penguins", help="local endpoint to serve (default: penguins)")
    p.add_argument("--model-dir", help="serve this SavedModel alone instead of an endpoint ($AIP_STORAGE_URI)")
    p.add_argument("--model-name", "--model_name", dest="model_name",
                   help="the model name of KServe's v1 routes, /v1/models/NAME:predict and :explain (KServe's "
                        "InferenceService name; default: the endpoint's name)")
    # what KServe appends to a custom explainer's args (explainer_custom.go): taken, so the explainer starts
    p.add_argument("--http_port", dest="port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--predictor_host", help=argparse.SUPPRESS)  # kfkit serve loads the model itself
    p.add_argument("--workers", type=int, default=4, help="threads that run predictions (4)")
    p.add_argument("--intra-op-threads", type=int, default=1,
                   help="TensorFlow's threads within one operation (default 1: requests, batched, use the "
                        "cores; with it one inter-op thread, not spinning; 0: TensorFlow's choice, one per core, "
                        "for both)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1 only)")
    p.add_argument("--port", type=int, help="port (default: $AIP_HTTP_PORT or 8080)")
    p.add_argument("--log-sample-rate", type=float, default=1.0, help="share of requests logged for monitoring")
    p.add_argument("--no-access-log", action="store_true",
                   help="no JSON line per request on the kfkit.access logger (stderr); /metrics and the request "
                        "log still count every request")
    p.add_argument("--log-max-file-mb", type=float, default=64, help="request log file size before rotation (64)")
    p.add_argument("--log-max-total-mb", type=float, default=1024, help="request logs kept in all (1024 MB)")
    p.add_argument("--log-max-age-days", type=float, default=30, help="request logs older than this are deleted (30)")
    p.add_argument("--token-file", metavar="FILE", help="a token (16+ characters) every prediction must carry as "
                   "Authorization: Bearer (health and metrics stay open); default: none")
    p.add_argument("--max-connections-per-client", type=int, default=0,
                   help="connections one client address may hold (default 0: no limit; behind Vertex AI or "
                        "KServe every request comes from the platform's proxy)")
    p.add_argument("--max-connections", type=int, default=2048,
                   help="open connections or requests in progress before answering 503 (2048)")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("endpoints", help="list local endpoints and their traffic splits")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.set_defaults(func=_endpoints)

    p = sub.add_parser("rollback", help="restore an endpoint's previous traffic split")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--backend", choices=["local", "vertex", "kserve"], default="local")
    p.add_argument("--project", help="Google Cloud project (vertex)")
    p.add_argument("--region", default="us-central1", help="Vertex AI region (vertex)")
    p.add_argument("--namespace", default="", help="Kubernetes namespace (kserve; default: the pod's own, else default)")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.add_argument("--undo", action="store_true", help="put back the split the last rollback replaced (local)")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("promote", help="give an endpoint's canary (or --deployed-model-id) 100%% of the traffic")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--deployed-model-id", default="", help="deployed model to promote (default: the newest)")
    p.add_argument("--backend", choices=["local", "vertex", "kserve"], default="local",
                   help="local endpoints, a Vertex AI endpoint, or a KServe InferenceService (KServe's own canary "
                   "promotion)")
    p.add_argument("--project", help="Google Cloud project (vertex)")
    p.add_argument("--region", default="us-central1", help="Vertex AI region (vertex)")
    p.add_argument("--namespace", default="", help="Kubernetes namespace (kserve; default: the pod's own, else default)")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.set_defaults(func=_promote)

    p = sub.add_parser("canary", help="an endpoint's canary: its figures so far against the baseline")
    p.add_argument("action", choices=["status"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--min-requests", type=int, default=100, help="requests each side needs for a verdict (100)")
    p.add_argument("--backend", choices=["local", "vertex", "kserve"], default="local")
    p.add_argument("--project", default="", help="Google Cloud project (vertex)")
    p.add_argument("--region", default="us-central1", help="Vertex AI region of the endpoint (vertex)")
    p.add_argument("--request-logging-table", default="",
                   help="the endpoint's request-response logging table, bq://project.dataset.table (vertex)")
    p.add_argument("--bigquery-location", default="US", help="BigQuery location of that table (vertex)")
    p.add_argument("--namespace", default="", help="Kubernetes namespace (kserve; default: the pod's own, else default)")
    p.add_argument("--prometheus-url", default="", help="the cluster's Prometheus, http(s)://... (kserve)")
    p.add_argument("--request-logger-url", default="",
                   help="the kfkit log-sink KServe's inference logger posts to, http(s)://... (kserve)")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.set_defaults(func=_canary)

    p = sub.add_parser("log-sink", help="receive KServe's inference logger events as request logs "
                                        "(what the canary analysis reads on KServe)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (in a pod: 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (8080)")
    p.add_argument("--inference-service", action="append", default=[],
                   help="log only this InferenceService (repeatable; recommended; default: any, at most 256)")
    p.add_argument("--token-file", metavar="FILE", help="a token (16+ characters; a Kubernetes Secret mounted as a "
                   "file) every POST and GET /records must carry; required to listen beyond loopback")
    p.add_argument("--max-connections-per-client", type=int, default=64,
                   help="connections one client address may hold (64; 0: no limit)")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    p.set_defaults(func=_log_sink)

    p = sub.add_parser("data", help="the local warehouse: sample tables, synthetic data, your files")
    p.add_argument("--local-root", help="local state directory (default: $KFKIT_LOCAL_ROOT or ./.kfkit)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dsub.add_parser("load-samples", help="load the penguins and Chicago taxi sample tables")
    dsub.add_parser("tables", help="list the tables")
    s = dsub.add_parser("synth", help="write synthetic rows to a table")
    s.add_argument("table", help="dataset.table or project.dataset.table")
    s.add_argument("--rows", type=int, default=100_000)
    s.add_argument("--numeric", type=int, default=15)
    s.add_argument("--categorical", type=int, default=4)
    s.add_argument("--task", choices=["binary", "multiclass", "regression"], default="binary")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shift", type=float, default=0.0, help="shift the feature distributions (drifted data)")
    s.add_argument("--null-fraction", type=float, default=0.0)
    s = dsub.add_parser("load", help="load a CSV or Parquet file as a table")
    s.add_argument("table", help="dataset.table or project.dataset.table")
    s.add_argument("path")
    p.set_defaults(func=_data)
    return parser


LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class SecondFormatter(logging.Formatter):
    """logging.Formatter's text, with each second's time of day spelled once (strftime) and each line
    adding its milliseconds: under `kfkit serve`, which logs a line per request, strftime per line was
    a tenth of the line's cost. A format of its own (datefmt) is spelled per line, as before."""

    _second: tuple = (None, "")  # (the second, its converter and format; its text), replaced whole

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        # converter(created) ignores the fraction (time.localtime floors it): one text per second
        key = (record.created // 1, self.converter, self.default_time_format)
        second, text = self._second
        if second != key:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (key, text)
        return self.default_msec_format % (text, record.msecs) if self.default_msec_format else text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(SecondFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from kfkit.errors import KfkitError

    try:
        return args.func(args)
    except KfkitError as exc:
        print(f"kfkit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
