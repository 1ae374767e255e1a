"""Mutation testing of kfkit's core logic: how many planted bugs the tests catch, per module.

    make mutation                      # every module below (about 20 minutes on 2 cores)
    python ci/mutation.py kfkit/serving/endpoints.py

For each module, mutmut (https://mutmut.readthedocs.io) plants one small change at a time (an
operator, a constant, a dropped argument) into a scratch copy of the repository and runs the
tests that exercise the changed function; a mutant the tests do not fail on "survived". The
kill ratio counts survivors and mutants no test reaches against the module; mutants judged
equivalent (the program behaves the same) are listed in ci/mutation-equivalent.txt with the
reason, and left out. Target: at least 90% per module (docs/testing.md).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.90
# module -> (the tests that exercise it in-process, which of its functions are in scope: a regex over
# mutmut's mutant names, empty for all). mutmut runs the tests in a forked process per mutant, so
# tests that train a model per run (the penguin_model fixture) are left to `make test`.
FAST_EVALUATE = [f"tests/test_evaluate.py::{name}" for name in (
    "test_classification_metrics_match_hand_computed_values", "test_regression_metrics_match_hand_computed_values",
    "test_no_champion_means_thresholds_alone_decide", "test_challenger_may_be_worse_than_the_champion_only_within_tolerance",
    "test_regression_tolerance_is_relative_to_the_champion_rmse")]
KSERVE_FAST = [
    "test_first_deploy_creates_a_tensorflow_inference_service_with_all_the_traffic",
    "test_a_new_version_replaces_the_predictor_as_kserves_canary_keeping_the_resource_version",
    "test_a_full_switch_sends_no_canary_field", "test_deploying_the_version_already_served_sends_nothing",
    "test_promote_removes_the_canary_field_and_rollback_sets_it_to_zero",
    "test_promote_without_a_canary_and_rollback_without_a_previous_revision_are_refused",
    "test_a_concurrent_change_fails_the_update_naming_the_service",
    "test_a_forbidden_read_is_an_error_with_the_api_servers_message",
    "test_wait_ready_polls_with_backoff_until_the_generation_is_reconciled_and_ready",
    "test_wait_ready_fails_with_kserves_reason_when_the_revision_fails", "test_wait_ready_gives_up_after_its_timeout",
    "test_the_namespace_defaults_to_the_pods_own_then_default", "test_a_version_is_staged_in_tf_servings_layout_once",
    "test_staging_skips_a_whole_copy_and_redoes_a_half_copy",
    "test_a_model_storage_kserve_cannot_read_from_is_refused_naming_it",
    "test_a_directory_without_a_saved_model_is_refused",
    "test_the_schema_check_catches_a_misspelt_field_a_wrong_type_and_a_missing_predictor",
    "test_cli_rollback_on_kserve_sends_kserves_rollback_through_the_real_client",
    "test_kserves_status_is_read_whole_and_missing_parts_read_as_nothing",
    "test_an_empty_pod_namespace_file_means_default",
    "test_an_inference_service_has_one_replica_and_no_account_or_canary_unless_asked",
    "test_deploy_says_what_it_did_in_each_case", "test_a_traffic_share_outside_0_to_100_is_refused_before_any_call",
    "test_replicas_reach_the_predictor_and_no_account_is_named_unless_given",
    "test_a_refused_create_is_an_error_naming_the_service_and_the_reason",
    "test_rollback_after_a_promotion_goes_to_kserves_previous_rolled_out_revision",
    "test_wait_ready_backs_off_to_fifteen_seconds_at_most",
    "test_wait_ready_reports_a_failure_without_a_message_by_its_reason_alone",
    "test_a_not_ready_condition_without_a_reason_is_waited_on_and_the_timeout_says_its_state",
    "test_an_object_without_a_generation_counts_as_reconciled",
    "test_deploying_again_what_is_served_says_so_in_the_log",
    "test_a_service_whose_predictor_names_no_model_is_moved_to_the_tensorflow_one",
    "test_a_canary_can_be_rolled_back_before_kserve_reports_any_status",
    "test_a_second_rollback_names_the_canary_field_at_zero",
    "test_wait_ready_waits_while_kserve_has_written_no_status_or_no_observed_generation",
    "test_a_timeout_before_any_condition_says_ready_is_unknown",
    "test_an_api_error_without_a_json_body_is_named_by_its_status_and_reason",
    "test_without_a_cluster_or_kubeconfig_the_error_says_what_is_needed",
    "test_the_adapter_works_in_the_pods_namespace_unless_given_one"]
MODULES: dict[str, tuple[list[str], str]] = {
    "kfkit/serving/endpoints.py": (["tests/test_endpoints.py"], ""),
    "components/evaluate/evaluate.py": (["tests/test_gate_thresholds.py", "tests/test_metrics_reference.py", *FAST_EVALUATE],
                                        r"x_decide|Thresholds|x_classification_metrics|x_regression_metrics"),
    "kfkit/params.py": (["tests/test_params.py"], ""),
    "kfkit/adapters/vertex.py": (["tests/test_vertex_adapter.py", "tests/test_fakes.py"], ""),
    "kfkit/serving/server.py": (["tests/test_server_fast.py::test_routing_follows_the_traffic_split_90_10",
                         "tests/test_server_fast.py::test_routing_never_sends_to_a_version_with_no_traffic",
                         "tests/test_server_fast.py::test_an_endpoint_whose_versions_all_have_zero_traffic_still_serves_one",
                         "tests/test_server_fast.py::test_a_one_percent_version_still_gets_its_share",
                         "tests/test_server_fast.py::test_the_same_seed_routes_the_same_way_and_the_revision_is_kept"],
                        r"Router"),
    "kfkit/serving/http_app.py": (["tests/test_http_app.py"], r"make_app|parse_body|check_values|Metrics|_reject_constant"),
    "kfkit/adapters/mlflow_registry.py": (["tests/test_registry_contract.py"], ""),
    "kfkit/tfdv.py": (["tests/test_tfdv_edges.py"] + [f"tests/test_drift.py::{name}" for name in (
        "test_numeric_js_divergence_matches_tfdv_reference_on_random_data",
        "test_numeric_js_divergence_matches_tfdv_reference_on_edge_cases",
        "test_same_boundaries_keep_nan_apart_and_rebucketing_drops_them_as_tfdv_does", "test_hand_computed_rebucketing",
        "test_categorical_linf_matches_tfdv_reference", "test_high_cardinality_categorical_against_an_identical_copy_is_zero",
        "test_missing_values_are_left_out_of_both_distances", "test_shift_is_found_on_the_shifted_feature_only",
        "test_heavy_tailed_window_from_the_training_data_alarms_under_tfdv_but_not_on_baseline_bins",
        "test_baseline_bins_counts_the_window_on_the_baseline_edges_with_open_ends")], ""),
    "kfkit/adapters/bigquery.py": (["tests/test_bigquery_adapter.py", "tests/test_ingest_export.py"], ""),
    "kfkit/cloud_jobs.py": (["tests/test_cloud_jobs.py"], ""),
    "components/ingest/bigquery_split.py": (["tests/test_ingest_export.py"], ""),
    "components/validate/bigquery_stats.py": (["tests/test_validate_bigquery.py"], ""),
    # every KServe test but the one that trains a model
    "kfkit/adapters/kserve.py": ([f"tests/test_kserve.py::{name}" for name in KSERVE_FAST] + [
        "tests/test_canary_kserve.py::test_deploy_with_a_request_logger_points_kserves_logger_at_the_sink_with_kfkits_"
        "annotations", "tests/test_canary_kserve.py::test_deploy_without_a_request_logger_sends_no_logger_and_refuses_"
        "an_address_that_is_not_http"], ""),
    "components/deploy/model_storage.py": ([f"tests/test_kserve.py::{name}" for name in KSERVE_FAST], ""),
    "kfkit/runs/docker_runner.py": (["tests/test_docker_runner.py"], ""),
    "kfkit/adapters/prometheus.py": (["tests/test_prometheus.py", "tests/test_canary_kserve.py"], ""),
    "kfkit/serving/log_sink.py": (["tests/test_log_sink.py"], ""),
    "components/canary/kserve.py": (["tests/test_canary_kserve.py"], ""),
    "kfkit/adapters/monitoring.py": (["tests/test_canary_vertex.py"], ""),
    "components/canary/vertex.py": (["tests/test_canary_vertex.py"], ""),
    "components/tune/space.py": ([f"tests/test_tune.py::{name}" for name in (
        "test_a_yaml_search_space_becomes_one_dimension_per_hyperparameter", "test_a_json_search_space_reads_the_same",
        "test_a_bad_search_space_is_refused_naming_the_entry", "test_a_refusal_says_exactly_which_entry_and_why",
        "test_values_come_back_in_trains_types")], ""),
    "components/ingest/ingest.py": (["tests/test_split_reference.py", "tests/test_ingest_streaming.py",
                                     "tests/test_sql.py::test_split_buckets_equal_the_bigquery_sql_expression",
                                     "tests/test_bigquery_adapter.py", "tests/test_ingest.py"], ""),
}
EQUIVALENT = REPO / "ci" / "mutation-equivalent.txt"


def equivalent_mutants() -> dict[str, str]:
    listed = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                listed[name] = reason.strip()
    return listed


def in_package(path: str) -> str:
    """Where a file sits in the installed layout: components/ and pipelines/ are kfkit.components and
    kfkit.pipelines, and mutmut names each mutant by the module path of its file."""
    return f"kfkit/{path}" if path.startswith(("components/", "pipelines/")) else path


def scratch_copy(module: str, tests: list[str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="kfkit-mutation-"))
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        source = REPO / name
        if source.is_file():
            (root / in_package(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / in_package(name))
    selection = ", ".join(f'"{t}"' for t in tests + ["-m", "not slow and not docker", "-p", "no:cacheprovider",
                                                       "-q", "-x"])
    with open(root / "pyproject.toml", "a") as handle:
        handle.write(f"""
[tool.mutmut]
source_paths = ["kfkit"]
only_mutate = ["{in_package(module)}"]
also_copy = ["tests", "ci"]
pytest_add_cli_args_test_selection = [{selection}]
""")
    return root


def run_module(module: str, tests: list[str], scope: str, log_dir: Path) -> dict[str, str]:
    root = scratch_copy(module, tests)
    log = log_dir / (module.replace("/", "_") + ".log")
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=root, stdout=handle, stderr=subprocess.STDOUT)
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=root,
                             capture_output=True, text=True).stdout
    prefix = in_package(module).removesuffix(".py").replace("/", ".") + "."
    statuses = {}
    for line in listing.splitlines():
        name, _, status = line.strip().partition(": ")
        if name.startswith(prefix) and re.search(scope, name):
            statuses[name] = status
    survivors = [n for n, s in statuses.items() if s != "killed"]
    with open(log_dir / (module.replace("/", "_") + ".survivors.txt"), "w") as handle:
        for name in survivors:
            diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=root,
                                  capture_output=True, text=True).stdout
            handle.write(f"## {name} ({statuses[name]})\n{diff}\n")
    shutil.rmtree(root, ignore_errors=True)
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all of MODULES)")
    parser.add_argument("--logs", default=str(REPO / "build" / "mutation"), help="where logs and survivors go")
    args = parser.parse_args()
    log_dir = Path(args.logs)
    log_dir.mkdir(parents=True, exist_ok=True)
    equivalent = equivalent_mutants()
    all_killed = all_counted = 0
    below = []
    for module in args.modules or list(MODULES):
        started = time.perf_counter()
        tests, scope = MODULES[module]
        statuses = run_module(module, tests, scope, log_dir)
        counted = {n: s for n, s in statuses.items() if n not in equivalent}
        killed = sum(1 for s in counted.values() if s == "killed")
        survived = sum(1 for s in counted.values() if s == "survived")
        untested = sum(1 for s in counted.values() if s == "no tests")
        other = len(counted) - killed - survived - untested
        ratio = killed / len(counted) if counted else 0.0
        all_killed, all_counted = all_killed + killed, all_counted + len(counted)
        if ratio < TARGET:
            below.append(module)
        label = module + (f" ({scope.replace('x_', '')})" if scope else "")
        print(f"{label:<36} {ratio:6.1%} killed ({killed}/{len(counted)}; {survived} survived, {untested} untested, "
              f"{other} other; {len(statuses) - len(counted)} equivalent) in {time.perf_counter() - started:.0f}s",
              flush=True)
    print(f"\n{'all':<36} {all_killed / max(all_counted, 1):6.1%} killed ({all_killed}/{all_counted}); "
          f"target {TARGET:.0%} per module; survivors with their diffs: {log_dir}/*.survivors.txt")
    if below:
        print("below the target: " + ", ".join(below))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
