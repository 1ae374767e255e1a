"""Another team's pipeline: kfkit's ingest, validate, train, evaluate and register next to Google's
prebuilt ModelBatchPredictOp, which takes kfkit's google.VertexModel output as it is.

    python examples/reuse_with_gcpc.py   # writes reuse_with_gcpc.yaml; submit it to Vertex AI Pipelines
"""

from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
from kfp import compiler, dsl

from kfkit.components.evaluate.component import evaluate_model
from kfkit.components.ingest.component import bigquery_query_to_dataset
from kfkit.components.register.component import register_model
from kfkit.components.train.component import train_tensorflow_model
from kfkit.components.validate.component import validate_data


@dsl.pipeline(name="penguins-weekly-scoring")
def penguins_weekly_scoring(project: str, source_table: str = "bigquery-public-data.ml_datasets.penguins",
                            scoring_table: str = "bq://my-project.penguins.to_score",
                            output_dataset: str = "bq://my-project.penguins_predictions",
                            location: str = "us-central1"):
    data = bigquery_query_to_dataset(
        query="SELECT * EXCEPT(sex), sex FROM `bigquery-public-data.ml_datasets.penguins` WHERE body_mass_g IS NOT NULL",
        label_column="species", backend="bigquery", project=project)
    stats = validate_data(train_data=data.outputs["train_data"], eval_data=data.outputs["eval_data"],
                          test_data=data.outputs["test_data"], label_column="species")
    model = train_tensorflow_model(train_data=data.outputs["train_data"], eval_data=data.outputs["eval_data"],
                                   statistics=stats.outputs["statistics"], schema=stats.outputs["schema"],
                                   label_column="species")
    evaluation = evaluate_model(model=model.outputs["model"], test_data=data.outputs["test_data"], min_accuracy=0.9)
    with dsl.If(evaluation.outputs["Output"] == True):  # noqa: E712
        registered = register_model(model=model.outputs["model"], metrics=evaluation.outputs["metrics"],
                                    model_name="penguins", backend="vertex", project=project, location=location)
        ModelBatchPredictOp(
            project=project, location=location, job_display_name="penguins-weekly-scoring",
            model=registered.outputs["registered_model"], instances_format="bigquery",
            predictions_format="bigquery", bigquery_source_input_uri=scoring_table,
            bigquery_destination_output_uri=output_dataset, machine_type="n1-standard-4")


if __name__ == "__main__":
    compiler.Compiler().compile(penguins_weekly_scoring, "reuse_with_gcpc.yaml")
    print("wrote reuse_with_gcpc.yaml")
