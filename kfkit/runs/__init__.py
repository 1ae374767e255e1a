"""Taking a pipeline to a runner and saying what happened.

- `compile`: component specs and pipeline templates (`kfkit compile`);
- `local`: `kfkit run --local` through kfp.local, step by step, with `output` (one line per step,
  full logs to files) and `outcome` (the run's decision, its summary, the runs listing);
- `docker_runner`: the same steps in kfkit's images on a local Docker engine;
- `submit`: Vertex AI Pipelines and Kubeflow Pipelines submission; `publish`: templates to
  Artifact Registry.

The only layer (with kfkit.cli and kfkit.catalog) that imports pipelines. Components never import
it (tests/test_layers.py).
"""
