"""The Kubeflow Training Operator's published TFJob schema, read from its SDK wheel (not installed).

The `kubeflow-training` SDK's models (kubeflow/training/models/kubeflow_org_v1_*.py) are generated
from the operator's OpenAPI definitions (the TFJob CRD's), as KServe's are: the same reader
(tests/kserve_schema.py) walks them, Kubernetes types (V1PodTemplateSpec...) coming from the
Kubernetes client. The wheel is downloaded once, beside KServe's (installing it would pull a
different Kubernetes client). KFKIT_TEST_CACHE moves that cache.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.kserve_schema import Schema

KUBEFLOW_TRAINING = "kubeflow-training==1.9.3"
CACHE = Path(os.environ.get("KFKIT_TEST_CACHE") or Path(sys.prefix) / "kfkit-test-cache") / "kubeflow-training"


def wheel() -> Path:
    found = sorted(CACHE.glob("kubeflow_training-*.whl"))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", KUBEFLOW_TRAINING, "--no-deps", "-q", "-d", str(CACHE)],
                       check=True, timeout=300)
        found = sorted(CACHE.glob("kubeflow_training-*.whl"))
    return found[-1]


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
