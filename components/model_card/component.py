"""KFP wrapper of the model card step."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def write_model_card(
    model: Input[Model],
    metrics: Input[Metrics],
    statistics: Input[Artifact],
    reason: str,
    model_card: Output[Markdown],
):
    """Writes a Markdown model card for a blessed model.

    Args:
        model: The blessed model (its metadata names task, label, signature and framework).
        metrics: Its test metrics from evaluate.
        statistics: Training statistics from validate.
        reason: Evaluate's reason for blessing it.

    Returns:
        model_card: Markdown summary of the model, its inputs, data and evaluation.
    """
    import json

    from kfkit.components.evaluate.evaluate import metric_values
    from kfkit.components.model_card.model_card import build, markdown
    from kfkit.atomic import atomic_file

    with open(statistics.path) as f:
        stats = json.load(f)
    values = metric_values(dict(metrics.metadata))
    card = build(dict(model.metadata), values, reason, stats, model.uri, dict(metrics.metadata.get("thresholds") or {}))
    with atomic_file(model_card.path) as handle:
        handle.write(markdown(card))
    # the card's data: the run's HTML page renders it naming the version registered after this step
    model_card.metadata["card"] = card

    from kfkit import quick_exit

    # forked from a local run's zygote, this process holds TensorFlow and MLflow too: skip their
    # second of teardown
    quick_exit.after_success()
