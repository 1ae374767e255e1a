"""Training pipeline: ingest -> validate (train, evaluate and the gated steps join with their stages).

Every parameter defaults to a value that runs on one machine with the embedded backend; switch to
Google Cloud with backend=bigquery and a project.
"""

from kfp import dsl

from components.ingest.component import bigquery_query_to_dataset
from components.validate.component import validate_data

# One line: KFP copies defaults into a comment header of the compiled YAML, and a newline there
# makes the template unreadable to the Vertex SDK.
PENGUINS_QUERY = (
    "SELECT species, island, culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g, sex "
    "FROM `bigquery-public-data.ml_datasets.penguins` "
    "WHERE species IS NOT NULL AND body_mass_g IS NOT NULL"
)


@dsl.pipeline(name="kfkit-training",
              description="BigQuery table to a validated dataset, then a trained and gated model.")
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
):
    ingest = bigquery_query_to_dataset(
        query=query, label_column=label_column, query_parameters=query_parameters, backend=backend,
        project=project, location=location, split_key=split_key, train_fraction=train_fraction,
        eval_fraction=eval_fraction, test_fraction=test_fraction, local_root=local_root,
    ).set_display_name("ingest")
    # the source table can change between runs with identical parameters
    ingest.set_caching_options(False)

    validate = validate_data(
        train_data=ingest.outputs["train_data"], eval_data=ingest.outputs["eval_data"],
        test_data=ingest.outputs["test_data"], label_column=label_column, schema_uri=schema_uri,
        unseen_tolerance=unseen_tolerance,
    ).set_display_name("validate")
