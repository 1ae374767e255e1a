"""The HTML reports as a person sees them: each is loaded in headless Chromium (Debian's package),
and the browser's own layout says whether every chart has marks and every label is written in full
inside its chart (not cut, not clipped). .ci/run installs Chromium, and in CI (CI=true) these tests
fail without it; elsewhere they are skipped with that reason (apt-get install chromium)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from kfkit.components.evaluate.evaluate import Decision, evaluate_model, render_report as evaluation_report
from kfkit.components.ingest.ingest import SplitSpec, run_ingest
from kfkit.components.monitor import drift
from kfkit.components.monitor.monitor import MonitorResult, render_report as monitor_report
from kfkit.components.validate.validate import render_report as validation_report, validate
from kfkit.runs.outcome import markdown_page
from tests.conftest import split_outputs
from tests.test_canary import endpoint_with_canary  # noqa: F401 - a fixture shared with the canary tests

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK = """<script>
window.addEventListener('load', () => {
  const charts = [];
  document.querySelectorAll('svg.chart').forEach(svg => {
    const box = svg.getBoundingClientRect();
    const labels = [];
    svg.querySelectorAll('text.label, text.legend').forEach(t => {
      const title = t.querySelector('title');
      const shown = t.childNodes.length ? t.childNodes[0].textContent : '';
      const b = t.getBoundingClientRect();
      labels.push({shown: shown, full: title ? title.textContent : shown,
                   inside: b.width > 0 && b.left >= box.left - 1 && b.right <= box.right + 1 &&
                           b.top >= box.top - 1 && b.bottom <= box.bottom + 1});
    });
    charts.push({marks: svg.querySelectorAll('.mark').length, labels: labels});
  });
  document.body.setAttribute('data-check', JSON.stringify(charts));
});
</script>"""


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (errors included), from Chromium's log on stderr."""
    return re.findall(r":CONSOLE[^\]]*\] (.*)", stderr)


def browser_check(html: str, tmp_path, name: str) -> list[dict]:
    page = tmp_path / f"{name}.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r"data-check=\"([^\"]*)\"", done.stdout)
    assert match, f"Chromium gave no layout for {name}: {done.stderr[-1500:]}"
    assert console_messages(done.stderr) == [], f"{name} wrote to the browser's console"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&#39;", "'"))


def assert_legible(charts: list[dict], expected_charts: int) -> None:
    assert len(charts) >= expected_charts
    for chart in charts:
        assert chart["marks"] > 0, chart
        for label in chart["labels"]:
            assert label["shown"] == label["full"], f"label cut: {label}"
            assert label["inside"], f"label outside its chart: {label}"


pytestmark = pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                                reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def taxi_splits(shared_root, tmp_path_factory):
    outputs = split_outputs(tmp_path_factory.mktemp("taxi-browser"))
    run_ingest("SELECT company, payment_type, trip_miles, fare, tips FROM "
               "`bigquery-public-data.chicago_taxi_trips.taxi_trips` WHERE company IS NOT NULL", outputs,
               split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}), label_column="tips",
               local_root=str(shared_root))
    return outputs


@pytest.fixture(scope="module")
def taxi_validation(taxi_splits):
    return validate(taxi_splits, "tips")


def tips_from_fare(taxi_splits, split: str):
    """Tips predicted by a straight line fitted on the training split's fares: a real regression."""
    import numpy as np
    import pyarrow.dataset as pads

    def columns(name):
        table = pads.dataset(str(taxi_splits[name]), format="parquet").to_table(columns=["fare", "tips"])
        return (np.nan_to_num(table.column("fare").to_numpy(zero_copy_only=False).astype(float)),
                np.nan_to_num(table.column("tips").to_numpy(zero_copy_only=False).astype(float)))

    slope, intercept = np.polyfit(*columns("train"), 1)
    fare, tips = columns(split)
    return tips, slope * fare + intercept


def test_validation_report_shows_every_label_in_full_and_outliers_do_not_squash_histograms(
        taxi_validation, tmp_path):
    html = validation_report(taxi_validation)

    charts = browser_check(html, tmp_path, "validation")

    assert_legible(charts, expected_charts=4)
    assert "1st to 99th percentile" in html  # trip_miles has a long tail: the chart says what it shows
    assert "Chicago Elite Cab Corp. (Chicago Carriag" in html  # a long company name, written in full


def test_evaluation_report_names_every_class_in_full_with_a_roc_curve_per_class(penguin_model, penguin_splits,
                                                                                tmp_path):
    _, evaluation = evaluate_model(penguin_model, penguin_splits["test"])
    html = evaluation_report(evaluation, Decision(True, "meets every threshold"))

    charts = browser_check(html, tmp_path, "evaluation")

    assert_legible(charts, expected_charts=2)  # confusion matrix and ROC curves
    assert len(evaluation.roc_per_class) == len(evaluation.classes)
    assert all(f"{name} (AUC " in html for name in evaluation.classes)


def test_monitoring_report_charts_are_legible(penguin_validation, tmp_path):
    rows = [{"island": "Biscoe", "culmen_length_mm": 40.0 + i % 10, "culmen_depth_mm": 17.0, "flipper_length_mm": 200.0,
             "body_mass_g": 4000.0 + 10 * i, "sex": "MALE"} for i in range(300)]
    result = monitor_report(MonitorResult(drift.compare(drift.baseline_from_statistics(penguin_validation.statistics),
                                                        drift.columns_of(rows)), (0.0, 3600.0), 300, "skew"))

    assert_legible(browser_check(result, tmp_path, "monitoring"), expected_charts=5)


def test_model_card_renders_as_html_with_its_tables(tmp_path):
    html = markdown_page("Model card", "# penguins\n\n- task: multiclass\n\n| metric | value |\n|---|---|\n"
                                       "| accuracy | 0.98 |\n")
    page = tmp_path / "card.html"
    page.write_text(html)

    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", f"--user-data-dir={tmp_path / 'c'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)

    assert "<td>accuracy</td><td>0.98</td>" in done.stdout and "<li>task: multiclass</li>" in done.stdout


def test_a_chart_of_one_series_still_has_marks_and_axis_ticks(tmp_path):
    from kfkit import report

    html = report.page("t", [report.bar_chart(["a", "b"], [[1, 3]])])

    [chart] = browser_check(html, tmp_path, "small")
    assert chart["marks"] == 2 and "class='tick'" in html




def test_regression_report_draws_predicted_against_actual_residuals_and_error_by_decile_at_a_readable_size(
        taxi_splits, tmp_path):
    from kfkit.components.evaluate.evaluate import Thresholds, regression_metrics

    actual, predicted = tips_from_fare(taxi_splits, "train")  # thousands of rows: hexagons, not dots
    evaluation = regression_metrics(actual, predicted)
    html = evaluation_report(evaluation, Decision(True, "meets every threshold"), Thresholds(max_rmse=10.0))

    charts = browser_check(html, tmp_path, "regression")

    assert_legible(charts, expected_charts=4)
    for title in ("Predicted against actual", "Residuals against predicted", "Error by decile of the label"):
        assert f"<h3>{title}</h3>" in html
    assert "<polygon class='mark'" in html and "points in hexagons" in html
    assert "class='label peak'" in html  # the residual histogram's highest bin says what it holds
    assert all(int(w) >= 400 for w in re.findall(r"<svg width='(\\d+)'", html))
    assert re.search(r"<td class='l'>rmse</td><td class=''>[0-9.]+</td><td class=''>&lt;= 10</td>", html)
    assert f"<td class='l'>examples</td><td class=''>{len(actual)}</td>" in html  # a count, not 1234.0000


def dom(html: str, tmp_path, name: str) -> str:
    """The page as Chromium built it (its DOM after load)."""
    page = tmp_path / f"{name}.html"
    page.write_text(html)
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", f"--user-data-dir={tmp_path / 'c'}",
                           "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert "<body" in done.stdout, done.stderr[-1500:]
    assert console_messages(done.stderr) == [], f"{name} wrote to the browser's console"
    return done.stdout


def penguin_card(penguin_model, penguin_splits, penguin_validation):
    from kfkit.components.evaluate.evaluate import metric_values
    from kfkit.components.model_card.model_card import build
    from kfkit.tabular import ModelSpec

    spec = ModelSpec.load(penguin_model)
    _, evaluation = evaluate_model(penguin_model, penguin_splits["test"])
    meta = {"task": spec.task, "label": spec.label, "signature": spec.signature, "classes": spec.classes,
            "framework": "tensorflow", "hyperparameters": {"learning_rate": 0.01}}
    values = metric_values({**evaluation.metrics, **{f"champion_{k}": v for k, v in evaluation.metrics.items()}})
    return build(meta, values, "meets every threshold", penguin_validation.statistics, "/runs/7/train/model",
                 {"accuracy": ">= 0.8"})


def test_model_card_page_has_the_five_model_card_toolkit_sections_and_names_the_registered_version(
        penguin_model, penguin_splits, penguin_validation, tmp_path):
    from kfkit.components.model_card.model_card import html as card_html

    card = penguin_card(penguin_model, penguin_splits, penguin_validation)

    shown = dom(card_html(card, "models:/penguins/3"), tmp_path, "card")

    headings = re.findall(r"<h2>([^<]+)</h2>", shown)
    assert headings == ["Model details", "Intended use", "Metrics", "Data", "Limitations"]
    assert "<code>models:/penguins/3</code>" in shown
    assert "**" not in shown and "`" not in shown  # no Markdown marks left in the page
    examples = int(card["metrics"][[m["name"] for m in card["metrics"]].index("examples")]["value"])
    assert f"<td class=\"l\">examples</td><td class=\"\">{examples}</td>" in shown  # not 39.0000
    assert re.search(r"<td class=\"l\">accuracy</td><td class=\"\">[0-9.]+</td><td class=\"\">&gt;= 0.8</td>"
                     r"<td class=\"\"><span class=\"ok\">meets</span></td><td class=\"\">[0-9.]+</td>", shown)
    assert "<td class=\"l\">island</td>" in shown  # each input with what training saw of it


def test_model_card_markdown_is_kept_with_the_same_sections(penguin_model, penguin_splits, penguin_validation):
    from kfkit.components.model_card.model_card import markdown

    text = markdown(penguin_card(penguin_model, penguin_splits, penguin_validation))

    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Model details", "## Intended use", "## Metrics", "## Data", "## Limitations"]
    assert "multiclass on label `species`" in text and "| accuracy |" in text and ".0000" not in text


def test_run_index_page_shows_the_verdict_key_metrics_and_a_tile_per_report(
        penguin_model, penguin_splits, penguin_validation, tmp_path):
    from kfkit.components.model_card.model_card import markdown
    from kfkit.runs.outcome import publish_reports

    run_dir = tmp_path / "run-1"
    _, evaluation = evaluate_model(penguin_model, penguin_splits["test"])
    steps = {"evaluate-model": {"parameterValues": {"Output": True}, "artifacts": {"metrics": {"artifacts": [
                 {"metadata": {**evaluation.metrics, "blessed": True}}]}}},
             "write-model-card": {"artifacts": {"model_card": {"artifacts": [
                 {"metadata": {"card": penguin_card(penguin_model, penguin_splits, penguin_validation)}}]}}},
             "register-model": {"artifacts": {"registered_model": {"artifacts": [
                 {"metadata": {"resourceName": "models:/penguins/3"}}]}}}}
    for step, outputs in steps.items():
        (run_dir / step).mkdir(parents=True)
        (run_dir / step / "executor_output.json").write_text(json.dumps(outputs))
    (run_dir / "evaluate-model" / "report").write_text(
        evaluation_report(evaluation, Decision(True, "meets every threshold")))
    (run_dir / "write-model-card" / "model_card").write_text(
        markdown(steps["write-model-card"]["artifacts"]["model_card"]["artifacts"][0]["metadata"]["card"]))

    published = publish_reports(run_dir, "BLESSED", ["Model blessed: meets every threshold"])
    index = dom((run_dir / "reports" / "index.html").read_text(), tmp_path, "index")

    assert "<div class=\"verdict ok\">BLESSED</div>" in index
    assert re.search(r"<td class=\"l\">evaluate-model</td><td class=\"l\">accuracy</td><td class=\"\">[0-9.]+</td>",
                     index)
    tiles = re.findall(r"<a class=\"tile\" href=\"([^\"]+)\"><h3>([^<]+)</h3>", index)
    assert sorted(tiles) == [("evaluate-model.html", "evaluate-model"), ("model-card.html", "model card")]
    assert sorted(p.name for p in published) == ["evaluate-model.html", "model-card.html"]
    assert re.search(r"<div class=\"fact\">blessed</div><div class=\"fact\">accuracy [0-9.]+</div>", index)
    assert "<code>models:/penguins/3</code>" in (run_dir / "reports" / "model-card.html").read_text()


def test_canary_report_gives_each_side_one_colour_in_every_chart_and_its_criteria_with_evidence(
        endpoint_with_canary, tmp_path):  # noqa: F811 - the fixture imported above
    from kfkit.components.canary.analysis import Thresholds
    from kfkit.components.canary.canary import analyze_canary
    from kfkit.components.canary.report import render
    from tests.test_canary import Clock, traffic_for, write_log

    root, _, v1, v2 = endpoint_with_canary
    write_log(root, "penguins", traffic_for(v1, v2, 400, 100, canary_errors=3, canary_classes=("Adelie", "Adelie")))
    clock = Clock(v2["deployed_at"] + 2)
    result = analyze_canary("penguins", local_root=str(root), window_seconds=5, clock=clock, sleep=clock.sleep,
                            thresholds=Thresholds(min_requests=100), act=False)
    html = render(result)

    charts = browser_check(html, tmp_path, "canary")
    shown = dom(html, tmp_path, "canary-dom")

    assert_legible(charts, expected_charts=4)  # requests, errors, latency, predictions
    fills: dict[str, set] = {}
    for fill, side in re.findall(r"<rect class=\"mark\"[^>]* fill=\"([^\"]+)\"[^>]*><title>[^<]*\((canary|baseline)",
                                 shown):
        fills.setdefault(side, set()).add(fill)
    assert len(fills["canary"]) == len(fills["baseline"]) == 1 and fills["canary"] != fills["baseline"]
    distance = re.search(r"<tr><td class=\"l\">prediction_distance</td>(.*?)</tr>", shown).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", distance)
    assert cells[0] == "<span class=\"bad\">FAIL</span>" and cells[3] == "—"  # a distance has no baseline value
    assert re.fullmatch(r"[0-9.e-]+", cells[1])  # its p-value


def test_tuning_plot_has_a_legend_and_log_axes_where_the_space_and_the_losses_span_decades(tmp_path):
    from kfkit.components.tune import space as sp
    from kfkit.components.tune.report import render
    from kfkit.components.tune.tune import Trial, TuneResult

    dims = sp.parse_space({"learning_rate": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
                           "hidden_units": {"type": "categorical", "choices": [[16], [32, 16]]},
                           "dropout": {"type": "float", "low": 0.0, "high": 0.3}})
    # losses from 0.02 (good) to 2.5 (diverged): what a learning-rate search gives
    trials = [Trial(i, "COMPLETE", {"learning_rate": 10 ** (-4 + 3 * i / 11), "hidden_units": [16],
                                    "dropout": 0.02 * i}, 0.02 * 1.55 ** i, 1.0, 3) for i in range(12)]
    result = TuneResult({"learning_rate": 0.0001, "hidden_units": [16], "dropout": 0.0}, 0.02, 0, "eval_loss", "minimize", trials,
                        "s", "/x", 2.0)
    html = render(result, dims)

    [chart] = browser_check(html, tmp_path, "tuning")

    assert chart["marks"] == 12
    assert_legible([chart], expected_charts=1)
    shown = {label["shown"] for label in chart["labels"]}
    assert {"learning_rate (log)", "eval_loss (log)", "dropout", "best trial 0", "worse",
            "better eval_loss (log axis)"} <= shown
    assert all(f">{tick}</text>" in html for tick in ("0.0001", "0.001", "0.01", "0.1"))  # decades


def test_validation_report_overlays_train_eval_and_test_and_shows_integer_codes_as_categories(
        shared_root, tmp_path):
    outputs = split_outputs(tmp_path / "splits")
    run_ingest("SELECT EXTRACT(HOUR FROM trip_start_timestamp) AS trip_start_hour, "
               "EXTRACT(DAYOFWEEK FROM trip_start_timestamp) AS trip_start_day, payment_type, fare, tips FROM "
               "`bigquery-public-data.chicago_taxi_trips.taxi_trips`", outputs,
               split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}), label_column="tips",
               local_root=str(shared_root))
    html = validation_report(validate(outputs, "tips"))

    charts = browser_check(html, tmp_path, "validation-overlay")

    assert_legible(charts, expected_charts=5)
    legends = [[label["shown"] for label in chart["labels"] if label["shown"] in ("train", "eval", "test")]
               for chart in charts]
    assert all(names == ["train", "eval", "test"] for names in legends), legends  # every feature, every split
    assert "trip_start_hour (integer codes: 24 values)" in html
    hours = re.search(r"trip_start_hour \(integer codes.*?</svg>", html, re.S).group(0)
    assert "<title>0</title>" in hours and "<title>23</title>" in hours and " to " not in hours


def test_counts_of_a_split_shown_alone_have_whole_ticks(penguin_splits, tmp_path):
    html = validation_report(validate({"train": penguin_splits["train"]}, "species"))

    assert_legible(browser_check(html, tmp_path, "validation-counts"), expected_charts=4)
    ticks = re.findall(r"class='tick'>([^<]+)</text>", html)
    assert ticks and all(re.fullmatch(r"[0-9,]+", tick) for tick in ticks), ticks
