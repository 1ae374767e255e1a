"""dsl.OneOf over artifacts in kfp.local.

kfp.local 2.17.0 resolves `dsl.OneOf` for output parameters (OrchestratorUtils.get_dag_output_parameters:
the one conditional branch that produced a value) but refuses it for artifacts ("Expected 1 artifact in
ArtifactSelectorSpec. Got: 2"), while Vertex AI Pipelines and the KFP backend run such pipelines. The
training pipeline's tuned/fixed branches meet in a OneOf of the trained model, so kfkit gives kfp.local
the rule it already applies to parameters, for artifacts too. Applied only to the pinned kfp version
(tests/test_tune.py fails when a new kfp changes the method, rather than this patching it blindly).
"""

from __future__ import annotations

PATCHED_VERSION = "2.17.0"


def enable_artifact_oneof() -> bool:
    """Patch kfp.local (once); False when this kfp is not the version the patch was written for."""
    import kfp

    if kfp.__version__ != PATCHED_VERSION:
        return False
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    if getattr(OrchestratorUtils.get_dag_output_artifacts, "kfkit_oneof", False):
        return True

    def get_dag_output_artifacts(cls, dag_outputs_spec, io_store):
        outputs = {}
        for key, spec in dag_outputs_spec.artifacts.items():
            selectors = list(spec.artifact_selectors)
            if len(selectors) == 1:
                outputs[key] = io_store.get_task_output(selectors[0].producer_subtask,
                                                        selectors[0].output_artifact_key)
                continue
            found = []
            for selector in selectors:
                try:
                    found.append(io_store.get_task_output(selector.producer_subtask, selector.output_artifact_key))
                except (KeyError, ValueError):
                    continue  # that branch did not run
            if len(found) != 1:
                raise ValueError(f"'dsl.OneOf' output {key!r}: {len(found)} of the conditional branches produced "
                                 "it; expected exactly one")
            outputs[key] = found[0]
        return outputs

    get_dag_output_artifacts.kfkit_oneof = True
    OrchestratorUtils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)
    return True
