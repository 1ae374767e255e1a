"""Where kfkit 0.8 and earlier kept the MLflow pyfunc wrapper (now kfkit.serving.mlflow_pyfunc).

MLflow pickles a logged python_model by reference to its module: every version registered before
the move names `kfkit.mlflow_pyfunc.KfkitSavedModel`, and `mlflow models serve` must still load it.
"""

from kfkit.serving.mlflow_pyfunc import KfkitSavedModel

__all__ = ["KfkitSavedModel"]
