"""kfkit's KFP components: one package per lifecycle stage.

Each stage package holds the plain-Python module that does the work (tested without KFP) and a
`component.py` with the thin `@dsl.component` wrapper.
"""

# name -> (module, function): the component catalog `kfkit compile` writes specs for.
COMPONENTS = {
    "ingest": ("kfkit.components.ingest.component", "bigquery_query_to_dataset"),
    "validate": ("kfkit.components.validate.component", "validate_data"),
    "train": ("kfkit.components.train.component", "train_tensorflow_model"),
    "evaluate": ("kfkit.components.evaluate.component", "evaluate_model"),
    "explain": ("kfkit.components.explain.component", "explain_model"),
    "model_card": ("kfkit.components.model_card.component", "write_model_card"),
    "register": ("kfkit.components.register.component", "register_model"),
    "deploy": ("kfkit.components.deploy.component", "deploy_model"),
    "monitor": ("kfkit.components.monitor.component", "monitor_endpoint"),
    "recipe": ("kfkit.components.recipe.component", "champion_recipe"),
    "record_recipe": ("kfkit.components.recipe.component", "record_recipe"),
    "batch_predict": ("kfkit.components.batch_predict.component", "batch_predict"),
    "canary": ("kfkit.components.canary.component", "analyze_canary"),
    "tune": ("kfkit.components.tune.component", "tune_hyperparameters"),
}


def load(name: str):
    """The component registered under `name`."""
    from kfkit.lookup import load_named

    return load_named(COMPONENTS, name, "component")
