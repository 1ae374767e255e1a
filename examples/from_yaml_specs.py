"""A pipeline built only from kfkit's compiled component specs (no kfkit import in the pipeline
code), run on this machine with kfp.local.

    python examples/from_yaml_specs.py [LOCAL_ROOT]
"""

import sys
from pathlib import Path

from kfp import components, dsl, local

HERE = Path(__file__).resolve().parent.parent
ingest = components.load_component_from_file(str(HERE / "components" / "ingest" / "component.yaml"))
validate = components.load_component_from_file(str(HERE / "components" / "validate" / "component.yaml"))


@dsl.pipeline(name="taxi-data-check")
def taxi_data_check(local_root: str = ".kfkit"):
    data = ingest(query="SELECT fare, trip_miles, trip_seconds, payment_type, company, tips "
                        "FROM `bigquery-public-data.chicago_taxi_trips.taxi_trips` WHERE fare IS NOT NULL AND fare > @min_fare",
                  query_parameters={"min_fare": 2.5}, label_column="tips", split_key="*", local_root=local_root)
    validate(train_data=data.outputs["train_data"], eval_data=data.outputs["eval_data"],
             test_data=data.outputs["test_data"], label_column="tips", unseen_tolerance=0.05)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".kfkit").resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "runs"))
    taxi_data_check(local_root=str(root))
