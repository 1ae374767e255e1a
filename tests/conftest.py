import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
from kfkit.warehouse.local import LocalWarehouse

PENGUINS = "SELECT * FROM `bigquery-public-data.ml_datasets.penguins` WHERE species IS NOT NULL AND body_mass_g IS NOT NULL"
DEFAULT_SPLIT = SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "*")


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> Path:
    """A local root with the sample tables, shared by tests that only read it."""
    root = tmp_path_factory.mktemp("kfkit-root")
    LocalWarehouse(root).ensure_sample_data()
    return root


@pytest.fixture
def warehouse(shared_root) -> LocalWarehouse:
    return LocalWarehouse(shared_root)


def split_outputs(directory: Path) -> dict[str, Path]:
    return {name: directory / f"{name}_data" for name in SPLIT_NAMES}


@pytest.fixture(scope="session")
def penguin_splits(shared_root, tmp_path_factory) -> dict[str, Path]:
    outputs = split_outputs(tmp_path_factory.mktemp("penguin-splits"))
    run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", local_root=str(shared_root))
    return outputs


def leftovers(directory: Path) -> list[str]:
    """Everything in an output directory: after a failed step it must be empty."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# a local run's zygote ends with the run in tests (kfkit.runs.warm keeps it 10 minutes for a developer's
# next run): tests of a kept zygote set KFKIT_LOCAL_KEEP themselves and end it
os.environ.setdefault("KFKIT_LOCAL_KEEP", "0")


@pytest.fixture(scope="session")
def penguin_validation(penguin_splits):
    from kfkit.components.validate.validate import validate
    return validate(penguin_splits, "species")


@pytest.fixture(scope="session")
def penguin_model(penguin_splits, penguin_validation, tmp_path_factory) -> Path:
    """A real model trained on the penguin splits (about 5 s)."""
    from kfkit.components.train.train import Hyperparameters, train
    model_dir = tmp_path_factory.mktemp("models") / "penguins"
    train(penguin_splits["train"], penguin_splits["eval"], penguin_validation.statistics, penguin_validation.schema,
          "species", model_dir, Hyperparameters(epochs=40, seed=7))
    return model_dir


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts): its URI."""
    from tests.test_serving_e2e import free_port, wait_until

    state = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
         "--artifacts-destination", str(state / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=open(state / "server.log", "w"))
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{uri}/health", timeout=5).status == 200, timeout=120,
                   what="the MLflow server")
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


def pytest_configure(config):
    # gRPC reads its default roots once per process, at the first secure channel, whichever test
    # opens it (a client pointed at an https endpoint does, before any wire fake runs): the roots
    # it will read are the machine's own (where the environment names them) plus the fakes' certificate
    from tests.grpc_tls import session_certificate

    cert_pem, _, cert_path = session_certificate()
    machine = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "")
    if machine and machine != str(cert_path) and Path(machine).is_file():
        combined = cert_path.with_name("roots.pem")
        combined.write_bytes(Path(machine).read_bytes() + b"\n" + cert_pem)
        cert_path = combined
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(cert_path)
