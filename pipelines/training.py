"""Training pipeline: ingest -> validate -> train -> evaluate -> [blessed] model card, register, deploy.

Every parameter defaults to a value that runs on one machine with the embedded backend; switch to
Google Cloud with backend=bigquery and a project. Steps after evaluate run only when the
champion/challenger gate blesses the new model.
"""


from typing import Optional

from kfp import dsl

from kfkit.components.canary.component import analyze_canary
from kfkit.components.deploy.component import deploy_model
from kfkit.components.evaluate.component import evaluate_model
from kfkit.components.explain.component import explain_model
from kfkit.components.ingest.component import bigquery_query_to_dataset
from kfkit.components.model_card.component import write_model_card
from kfkit.components.recipe.component import RECIPE_PARAMETERS, record_recipe
from kfkit.components.register.component import register_model
from kfkit.components.train.component import train_tensorflow_model
from kfkit.components.validate.component import validate_data

from kfkit.components.recipe.recipe import DEFAULT_SEARCH_SPACE, PENGUINS_QUERY
from kfkit.components.tune.component import tune_hyperparameters
from kfkit.pipelines.kfp_local_compat import enable_artifact_oneof
from kfkit.pipelines.retries import cloud_step

enable_artifact_oneof()  # the tuned and fixed branches meet in a dsl.OneOf of the model

# Where the train step runs on Vertex when the pipeline is built with custom_training_job:
# a CustomJob with these settings (google-cloud-pipeline-components' create_custom_training_job_from_component).
# They are only the template: the pipeline's train_* parameters size each pool at run time.
DEFAULT_CUSTOM_JOB = {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                      "accelerator_count": 1, "replica_count": 2}
# Where training runs, not what it trains: no part of the recipe a retrain replays (the retrain
# runs on the pipeline's default pools).
PLACEMENT_PARAMETERS = ("train_chief_machine_type", "train_chief_accelerator_type", "train_chief_accelerator_count",
                        "train_worker_count", "train_worker_machine_type", "train_worker_accelerator_type",
                        "train_worker_accelerator_count", "train_reduction_server_count",
                        "train_reduction_server_machine_type")
REDUCTION_SERVER_IMAGE = "us-docker.pkg.dev/vertex-ai-restricted/training/reductionserver:latest"


def worker_pools(template: str, chief_machine_type: str, chief_accelerator_type: str, chief_accelerator_count: int,
                 worker_count: int, worker_machine_type: str, worker_accelerator_type: str,
                 worker_accelerator_count: int, reduction_server_count: int, reduction_server_machine_type: str,
                 reduction_server_image: str) -> list:
    """A CustomJob's worker_pool_specs: the chief (pool 0), workers (pool 1), reduction servers (pool 2).

    template: the train step's own worker_pool_specs (JSON), whose container spec and boot disk every
    training pool keeps: only machines and replica counts change. A pool left out is an empty spec, as
    Vertex AI reads a skipped pool.
    """
    import json

    def machine(machine_type: str, accelerator_type: str, accelerator_count: int) -> dict:
        spec = {"machine_type": machine_type}
        if accelerator_type and accelerator_count > 0:
            spec.update(accelerator_type=accelerator_type, accelerator_count=accelerator_count)
        return spec

    if worker_count < 0 or reduction_server_count < 0:
        raise ValueError(f"worker and reduction server counts must be >= 0, got {worker_count} and "
                         f"{reduction_server_count}")
    if reduction_server_count and not worker_count:
        raise ValueError("reduction servers reduce between workers: set train_worker_count as well")
    first = json.loads(template)[0]
    # the training pools keep the template's container and boot disk
    kept = {key: first[key] for key in ("container_spec", "disk_spec") if key in first}
    pools = [{**kept, "replica_count": 1,
              "machine_spec": machine(chief_machine_type, chief_accelerator_type, chief_accelerator_count)}]
    if worker_count or reduction_server_count:
        pools.append({**kept, "replica_count": worker_count,
                      "machine_spec": machine(worker_machine_type, worker_accelerator_type, worker_accelerator_count)})
    if reduction_server_count:
        pools.append({"container_spec": {"image_uri": reduction_server_image}, "replica_count": reduction_server_count,
                      "machine_spec": {"machine_type": reduction_server_machine_type}})
    return pools


def make_training_pipeline(custom_training_job: Optional[dict] = None, name: str = "kfkit-training"):
    """The training pipeline; with custom_training_job, the train step becomes a Vertex CustomJob
    (several workers: the trainer picks MultiWorkerMirroredStrategy from TF_CONFIG)."""
    train_op, pools_op, template = train_tensorflow_model, None, ""
    if custom_training_job:
        import json

        from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component

        from kfkit.config import runtime_image

        train_op = create_custom_training_job_from_component(train_tensorflow_model, display_name="kfkit-train",
                                                             **custom_training_job)
        template = json.dumps(train_op.component_spec.inputs["worker_pool_specs"].default)
        pools_op = dsl.component(worker_pools, base_image=runtime_image(), install_kfp_package=False)

    @dsl.pipeline(name=name, description="BigQuery table to a validated dataset, a trained and gated model.")
    def training_pipeline(
        query: str = PENGUINS_QUERY,
        label_column: str = "species",
        query_parameters: dict = {},
        backend: str = "local",
        project: str = "",
        location: str = "US",
        split_key: str = "*",
        train_fraction: float = 0.8,
        eval_fraction: float = 0.1,
        test_fraction: float = 0.1,
        local_root: str = ".kfkit",
        schema_uri: str = "",
        unseen_tolerance: float = 0.01,
        task: str = "auto",
        hidden_units: list = [64, 32],
        learning_rate: float = 0.01,
        epochs: int = 30,
        batch_size: int = 64,
        seed: int = 42,
        exclude_columns: list = [],
        categorical_columns: list = [],
        champion_model_uri: str = "",
        min_accuracy: float = 0.8,
        min_roc_auc: float = 0.0,
        max_log_loss: float = 0.0,
        max_rmse: float = 0.0,
        tolerance: float = 0.01,
        model_name: str = "penguins",
        endpoint_name: str = "penguins",
        region: str = "us-central1",
        traffic_percent: int = 100,
        keep_previous: int = 1,
        serving_image: str = "",
        machine_type: str = "n1-standard-2",
        request_logging_table: str = "",
        git_commit: str = "",
        maximum_bytes_billed: int = 1000000000000,
        endpoint_backend: str = "",
        namespace: str = "",
        model_storage_uri: str = "",
        serving_service_account: str = "",
        request_logger_url: str = "",
        prometheus_url: str = "",
        canary_window_seconds: float = 600.0,
        canary_min_requests: int = 100,
        canary_on_inconclusive: str = "keep",
        dropout: float = 0.0,
        tune: bool = False,
        search_space: str = DEFAULT_SEARCH_SPACE,
        tune_metric: str = "eval_loss",
        tune_goal: str = "minimize",
        tune_max_trials: int = 20,
        tune_parallelism: int = 1,
        train_chief_machine_type: str = DEFAULT_CUSTOM_JOB["machine_type"],
        train_chief_accelerator_type: str = DEFAULT_CUSTOM_JOB["accelerator_type"],
        train_chief_accelerator_count: int = DEFAULT_CUSTOM_JOB["accelerator_count"],
        train_worker_count: int = DEFAULT_CUSTOM_JOB["replica_count"] - 1,
        train_worker_machine_type: str = DEFAULT_CUSTOM_JOB["machine_type"],
        train_worker_accelerator_type: str = DEFAULT_CUSTOM_JOB["accelerator_type"],
        train_worker_accelerator_count: int = DEFAULT_CUSTOM_JOB["accelerator_count"],
        train_reduction_server_count: int = 0,
        train_reduction_server_machine_type: str = "n1-highcpu-16",
        slicing_specs: str = "",
        slice_min_examples: int = 0,
        explain: bool = False,
    ):
        """Trains a model from a query, gates it against the champion, and registers and deploys it if blessed.

        Args:
            query: BigQuery Standard SQL returning the training rows; `@name` parameters only.
            label_column: The column to predict.
            query_parameters: Values of the query's `@name` parameters.
            backend: `local` (DuckDB warehouse, MLflow, kfkit's server) or `bigquery` (BigQuery and
                Vertex AI; with `kfkit run --local`, the hybrid mode).
            project: Google Cloud project of the BigQuery jobs and Vertex AI resources (bigquery).
            location: BigQuery location of the query and staging dataset.
            split_key: Column(s) whose FARM_FINGERPRINT decides each row's split; `*` is the whole row.
            train_fraction: Share of rows in the training split.
            eval_fraction: Share of rows in the evaluation (early stopping) split.
            test_fraction: Share of rows in the test split (the gate's metrics); the three sum to 1.
            local_root: Directory of the embedded backend's state.
            schema_uri: A schema JSON the data must match; empty infers it from the training split.
            unseen_tolerance: Largest share of rows with a category outside the schema's domain.
            task: `auto` (from the label's type), `binary`, `multiclass` or `regression`.
            hidden_units: Units of each hidden layer.
            learning_rate: Adam's learning rate.
            epochs: Most epochs (training stops early when the evaluation loss stops improving).
            batch_size: Examples per training step.
            seed: Seed of every random choice in training.
            exclude_columns: Columns not used as features.
            categorical_columns: Integer columns to treat as categories.
            champion_model_uri: A model to compare with instead of the registry's champion.
            min_accuracy: Lowest accuracy that blesses a classifier.
            min_roc_auc: Lowest ROC AUC that blesses a classifier (0: not checked).
            max_log_loss: Highest log loss that blesses a classifier (0: not checked).
            max_rmse: Highest RMSE that blesses a regressor (0: not checked).
            tolerance: How much worse than the champion a blessed model may be.
            model_name: Registered model name.
            endpoint_name: Endpoint the blessed model is deployed to.
            region: Vertex AI region of the registry and endpoint (bigquery backend).
            traffic_percent: Share of the endpoint's traffic for the new model (a canary below 100).
            keep_previous: Earlier versions kept deployed without traffic, for a quick rollback.
            serving_image: Serving container on Vertex AI; empty: Vertex's prebuilt TensorFlow image.
            machine_type: Serving machine type on Vertex AI.
            request_logging_table: bq://project.dataset.table for the endpoint's request logs.
            git_commit: Commit of the code that trained the model (a label of the version).
            maximum_bytes_billed: Most bytes one BigQuery job of the run may bill (default 1 TB); a
                query whose dry-run estimate is over it is refused before it runs.
            endpoint_backend: `kserve` to deploy to a KServe InferenceService on the Kubernetes cluster
                (Kubeflow) while the registry is MLflow; empty: the backend's own endpoint.
            namespace: Kubernetes namespace of the InferenceService (kserve; empty: the step's own).
            model_storage_uri: s3:// or gs:// prefix KServe loads models from (kserve).
            serving_service_account: Kubernetes service account of the model server, with the
                credentials KServe's storage initializer reads model_storage_uri with (kserve).
            request_logger_url: http(s):// address of a `kfkit log-sink` KServe's inference logger posts
                requests and responses to (kserve; with prometheus_url, the canary is watched).
            prometheus_url: http(s):// address of the cluster's Prometheus, which scrapes Knative's
                queue-proxy metrics (kserve).
            canary_window_seconds: With traffic_percent below 100, how long the canary is watched before it
                is promoted or rolled back (0: no analysis, the split stays). On Vertex AI only with
                request_logging_table, on KServe only with request_logger_url and prometheus_url.
            canary_min_requests: Fewest requests each side needs for a verdict.
            canary_on_inconclusive: `keep` the split, or `rollback`, when traffic stays too little.
            dropout: Share of each hidden layer's units dropped while training.
            tune: Search the hyperparameters before training (the tune step) and train with the best.
            search_space: What tune varies (YAML or JSON; see the tune component); default:
                learning_rate, hidden_units and dropout.
            tune_metric: Tuning objective: eval_loss, eval_accuracy or eval_mae.
            tune_goal: `minimize` or `maximize` tune_metric.
            tune_max_trials: Trials in the search.
            tune_parallelism: Trials at once (processes here, parallel trials on Vertex AI).
            train_chief_machine_type: training-customjob: machine of the chief (pool 0), which alone
                writes the model; the other train_* parameters are read by training-customjob only.
            train_chief_accelerator_type: The chief's accelerator (empty: none), e.g. NVIDIA_TESLA_T4.
            train_chief_accelerator_count: Accelerators on the chief.
            train_worker_count: Workers besides the chief (pool 1); each reads its share of the rows.
            train_worker_machine_type: Machine of each worker.
            train_worker_accelerator_type: Each worker's accelerator (empty: none).
            train_worker_accelerator_count: Accelerators on each worker.
            train_reduction_server_count: Vertex AI Reduction Server replicas (pool 2; 0: none), for
                the all-reduce between GPU workers.
            train_reduction_server_machine_type: Machine of each reduction server.
            slicing_specs: Slices evaluate reports (TFMA's SlicingSpec as a JSON list, e.g.
                [{"feature_keys": ["island"]}]; empty: none).
            slice_min_examples: With slicing_specs, every slice with at least this many test examples must
                meet the thresholds and its champion's slice (0: slices are reported, not gated).
            explain: Explain a blessed model on the test split (sampled Shapley on the raw features)
                and store its feature importance with the registered version.
        """
        parameters = {name: value for name, value in locals().items() if name in RECIPE_PARAMETERS}
        ingest = bigquery_query_to_dataset(
            query=query, label_column=label_column, query_parameters=query_parameters, backend=backend,
            project=project, location=location, split_key=split_key, train_fraction=train_fraction,
            eval_fraction=eval_fraction, test_fraction=test_fraction, local_root=local_root,
            maximum_bytes_billed=maximum_bytes_billed,
        ).set_display_name("ingest")
        cloud_step(ingest)
        # the source table can change between runs with identical parameters
        ingest.set_caching_options(False)

        validate = validate_data(
            train_data=ingest.outputs["train_data"], eval_data=ingest.outputs["eval_data"],
            test_data=ingest.outputs["test_data"], label_column=label_column, schema_uri=schema_uri,
            unseen_tolerance=unseen_tolerance, maximum_bytes_billed=maximum_bytes_billed,
        ).set_display_name("validate")

        common = dict(train_data=ingest.outputs["train_data"], eval_data=ingest.outputs["eval_data"],
                      statistics=validate.outputs["statistics"], schema=validate.outputs["schema"],
                      label_column=label_column, task=task, seed=seed, exclude_columns=exclude_columns,
                      categorical_columns=categorical_columns)
        on_vertex = {}  # the train step's own worker pools, in training-customjob only
        if pools_op is not None:
            pools = pools_op(
                template=template, chief_machine_type=train_chief_machine_type,
                chief_accelerator_type=train_chief_accelerator_type,
                chief_accelerator_count=train_chief_accelerator_count, worker_count=train_worker_count,
                worker_machine_type=train_worker_machine_type, worker_accelerator_type=train_worker_accelerator_type,
                worker_accelerator_count=train_worker_accelerator_count,
                reduction_server_count=train_reduction_server_count,
                reduction_server_machine_type=train_reduction_server_machine_type,
                reduction_server_image=REDUCTION_SERVER_IMAGE,
            ).set_display_name("worker pools")
            on_vertex["worker_pool_specs"] = pools.output
        # the untuned branch first: its step keeps the name train-tensorflow-model (the tuned one's is -2)
        with dsl.If(tune == False, name="fixed"):  # noqa: E712 (KFP condition)
            train_fixed = train_op(
                hidden_units=hidden_units, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
                dropout=dropout, **common, **on_vertex,
            ).set_display_name("train")
        with dsl.Else(name="tuned"):
            tuned = tune_hyperparameters(
                search_space=search_space, metric=tune_metric, goal=tune_goal, max_trials=tune_max_trials,
                parallelism=tune_parallelism, hidden_units=hidden_units, learning_rate=learning_rate, epochs=epochs,
                batch_size=batch_size, dropout=dropout, backend=backend, project=project, location=region,
                local_root=local_root, **common,
            ).set_display_name("tune")
            # the data and the space can be the same while the code is not: the study resumes instead
            tuned.set_caching_options(False)
            train_tuned = train_op(
                hidden_units=tuned.outputs["hidden_units"], learning_rate=tuned.outputs["learning_rate"],
                epochs=tuned.outputs["epochs"], batch_size=tuned.outputs["batch_size"],
                patience=tuned.outputs["patience"], dropout=tuned.outputs["dropout"], **common, **on_vertex,
            ).set_display_name("train")
        trained_model = dsl.OneOf(train_fixed.outputs["model"], train_tuned.outputs["model"])

        evaluate = evaluate_model(
            model=trained_model, test_data=ingest.outputs["test_data"],
            champion_model_uri=champion_model_uri, min_accuracy=min_accuracy, min_roc_auc=min_roc_auc,
            max_log_loss=max_log_loss, max_rmse=max_rmse, tolerance=tolerance, model_name=model_name,
            backend=backend, project=project, location=region, local_root=local_root,
            slicing_specs=slicing_specs, slice_min_examples=slice_min_examples,
        ).set_display_name("evaluate")
        # the champion in the registry changes between runs
        evaluate.set_caching_options(False)

        with dsl.If(evaluate.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition)
            # every parameter of this run, recorded with the model before it is registered
            recipe = record_recipe(model=trained_model, **parameters).set_display_name("record-recipe")
            write_model_card(
                model=trained_model, metrics=evaluate.outputs["metrics"],
                statistics=validate.outputs["statistics"], reason=evaluate.outputs["reason"],
            ).set_display_name("model-card")
            register = register_model(
                model=trained_model, metrics=evaluate.outputs["metrics"], model_name=model_name,
                blessed=True, backend=backend, project=project, location=region, local_root=local_root,
                serving_image=serving_image,
                labels={"pipeline-run": dsl.PIPELINE_JOB_NAME_PLACEHOLDER, "git-commit": git_commit},
                data_snapshot=ingest.outputs["Output"],
                task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER, traffic_percent=traffic_percent,
            ).set_display_name("register")
            cloud_step(register)
            register.after(recipe)
            with dsl.If(explain == True, name="explained"):  # noqa: E712 (KFP condition)
                explain_model(
                    model=trained_model, data=ingest.outputs["test_data"], baseline_data=ingest.outputs["train_data"],
                    registered_model=register.outputs["registered_model"], metrics=evaluate.outputs["metrics"],
                    project=project, location=region, local_root=local_root,
                ).set_display_name("explain")
            deploy = cloud_step(deploy_model(
                registered_model=register.outputs["registered_model"], endpoint_name=endpoint_name,
                traffic_percent=traffic_percent, keep_previous=keep_previous, backend=backend, project=project,
                location=region, machine_type=machine_type, request_logging_table=request_logging_table,
                local_root=local_root, endpoint_backend=endpoint_backend, namespace=namespace,
                model_storage_uri=model_storage_uri, serving_service_account=serving_service_account,
                request_logger_url=request_logger_url,
            ).set_display_name("deploy"))
            # a canary is watched, then promoted or rolled back, where its figures can be read: kfkit's
            # server (its request logs), Vertex AI (with a request-response logging table), KServe (with
            # the log sink and Prometheus); elsewhere the split stays as deployed
            with dsl.If(traffic_percent < 100, name="canary"):
                # a float against a float: CEL has no float-int comparison, and the branch would be
                # skipped silently
                with dsl.If(canary_window_seconds > 0.0, name="watched"):
                    canary = dict(endpoint=deploy.outputs["endpoint"], backend=backend,
                                  endpoint_backend=endpoint_backend, project=project, location=region,
                                  request_logging_table=request_logging_table, bigquery_location=location,
                                  namespace=namespace, prometheus_url=prometheus_url,
                                  request_logger_url=request_logger_url, local_root=local_root,
                                  window_seconds=canary_window_seconds, min_requests=canary_min_requests,
                                  on_inconclusive=canary_on_inconclusive)
                    with dsl.If(endpoint_backend != "kserve", name="kfkit-or-vertex-endpoint"):
                        with dsl.If(backend == "local", name="kfkit-server"):
                            analyze_canary(**canary).set_display_name("canary analysis")
                        with dsl.If(backend != "local", name="vertex-endpoint"):
                            with dsl.If(request_logging_table != "", name="request-logging"):
                                analyze_canary(**canary).set_display_name("canary analysis")
                    with dsl.If(endpoint_backend == "kserve", name="kserve-endpoint"):
                        with dsl.If(request_logger_url != "", name="request-logger"):
                            with dsl.If(prometheus_url != "", name="prometheus"):
                                analyze_canary(**canary).set_display_name("canary analysis")

    return training_pipeline


training_pipeline = make_training_pipeline()
training_customjob_pipeline = make_training_pipeline(DEFAULT_CUSTOM_JOB, name="kfkit-training-customjob")
