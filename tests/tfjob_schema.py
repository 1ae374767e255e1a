"""The Kubeflow Training Operator's published TFJob schema, read from its SDK wheel (not installed).

The `kubeflow-training` SDK's models (kubeflow/training/models/kubeflow_org_v1_*.py) are generated
from the operator's OpenAPI definitions (the TFJob CRD's), as KServe's are: the same reader
(tests/kserve_schema.py) walks them, Kubernetes types (V1PodTemplateSpec...) coming from the
Kubernetes client. The wheel is downloaded once, beside KServe's (installing it would pull a
different Kubernetes client). KFKIT_TEST_CACHE moves that cache.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from tests.kserve_schema import Schema, cached_wheel

KUBEFLOW_TRAINING = "kubeflow-training==1.9.3"


def wheel() -> Path:
    return cached_wheel(KUBEFLOW_TRAINING, "kubeflow-training", "kubeflow_training-*.whl")


class TFJobSchema(Schema):
    def __init__(self, path: Path | None = None):
        self.models = {}
        with zipfile.ZipFile(path or wheel()) as archive:
            for name in archive.namelist():
                if re.fullmatch(r"kubeflow/training/models/kubeflow_org_v1_\w+\.py", name):
                    self._parse(archive.read(name).decode())
            self.constants = archive.read("kubeflow/training/constants/constants.py").decode()

    def problems(self, value, type_name: str = "KubeflowOrgV1TFJob", path: str = "") -> list[str]:
        return super().problems(value, type_name, path)


KFP_KUBERNETES = "kfp-kubernetes==2.17.0"


def kubernetes_executor_config():
    """kfp-kubernetes' KubernetesExecutorConfig message (the schema of a task's Kubernetes platform
    config, what Kubeflow Pipelines' driver reads), from its published wheel: installing it would pin
    requests and urllib3 to other versions than kfkit's."""
    import importlib.util
    import sys

    path = cached_wheel(KFP_KUBERNETES, "kfp-kubernetes", "kfp_kubernetes-*.whl")
    name = "kfp_kubernetes_executor_config_pb2"
    if name not in sys.modules:
        with zipfile.ZipFile(path) as archive:
            source = archive.read("kfp/kubernetes/kubernetes_executor_config_pb2.py").decode()
        spec = importlib.util.spec_from_loader(name, loader=None)
        module = importlib.util.module_from_spec(spec)
        exec(compile(source, f"{path.name}/kfp/kubernetes/kubernetes_executor_config_pb2.py", "exec"), module.__dict__)
        sys.modules[name] = module
    return sys.modules[name].KubernetesExecutorConfig
