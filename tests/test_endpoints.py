import json

import pytest

from kfkit.serving.endpoints import LocalEndpoints, split_traffic
from kfkit.errors import ConfigError


def test_canary_takes_its_share_and_the_rest_keeps_proportions():
    assert split_traffic({"a": 100}, "b", 10) == {"a": 90, "b": 10}
    assert split_traffic({"a": 50, "b": 50}, "c", 33) == {"a": 34, "b": 33, "c": 33}
    assert split_traffic({}, "a", 10) == {"a": 100}  # the first model takes all traffic
    assert sum(split_traffic({"a": 33, "b": 33, "c": 34}, "d", 7).values()) == 100


@pytest.mark.parametrize("current, percent, expected", [
    # the rest is shared in proportion, rounded by largest remainder (ties: in deployment order)
    ({"a": 50, "b": 50}, 33, {"a": 34, "b": 33, "new": 33}),            # 33.5 / 33.5
    ({"a": 70, "b": 20, "c": 10}, 15, {"a": 60, "b": 17, "c": 8, "new": 15}),  # 59.5 / 17 / 8.5
    ({"a": 2, "b": 1}, 50, {"a": 33, "b": 17, "new": 50}),              # 33.33 / 16.67
    ({"a": 1, "b": 1, "c": 1}, 10, {"a": 30, "b": 30, "c": 30, "new": 10}),
    ({"a": 90, "b": 10}, 0, {"a": 90, "b": 10, "new": 0}),              # a version deployed without traffic
    ({"a": 90, "b": 10}, 100, {"a": 0, "b": 0, "new": 100}),
    ({"a": 0, "b": 0, "c": 0}, 10, {"a": 0, "b": 0, "c": 90, "new": 10}),  # no shares to keep: the newest takes the rest
    ({"a": 100}, 99, {"a": 1, "new": 99}),
    ({"a": 0, "b": 100}, 1, {"a": 0, "b": 99, "new": 1}),
    ({}, 10, {"new": 100}),                                             # the first version takes all traffic
])
def test_canary_shares_are_exact_for_uneven_splits(current, percent, expected):
    assert split_traffic(current, "new", percent) == expected


@pytest.mark.parametrize("keep_previous, kept", [(0, ["4"]), (1, ["3", "4"]), (2, ["2", "3", "4"])])
def test_keep_previous_keeps_that_many_idle_versions_newest_first(tmp_path, model_dir, keep_previous, kept):
    endpoints = LocalEndpoints(tmp_path)
    for version in "123":
        endpoints.deploy("e", "m", version, model_dir, traffic_percent=100, keep_previous=5)

    state = endpoints.deploy("e", "m", "4", model_dir, traffic_percent=100, keep_previous=keep_previous)

    assert [m["version"] for m in state["deployed_models"]] == kept
    assert [m["traffic"] for m in state["deployed_models"]] == [0] * (len(kept) - 1) + [100]


def test_a_canary_never_counts_the_serving_version_as_idle(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)

    state = endpoints.deploy("e", "m", "2", model_dir, traffic_percent=10, keep_previous=0)

    assert [(m["version"], m["traffic"]) for m in state["deployed_models"]] == [("1", 90), ("2", 10)]


@pytest.mark.parametrize("percent", [-1, 101, 120])
def test_traffic_percent_outside_0_to_100_is_refused(percent):
    with pytest.raises(ConfigError, match=rf"^traffic percentage must be between 0 and 100, got {percent}$"):
        split_traffic({"a": 100}, "b", percent)


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"x")
    return str(tmp_path / "m")


def test_full_switch_keeps_only_keep_previous_idle_versions(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    for version in "1234":
        state = endpoints.deploy("e", "m", version, model_dir, traffic_percent=100, keep_previous=1)
    assert [(m["version"], m["traffic"]) for m in state["deployed_models"]] == [("3", 0), ("4", 100)]


def test_rollback_restores_the_previous_split(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=20)

    state = endpoints.rollback("e")

    assert [(m["version"], m["traffic"]) for m in state["deployed_models"]] == [("1", 100)]
    assert json.loads((tmp_path / "endpoints" / "e.json").read_text())["revision"] == 3


def test_rollback_without_history_or_endpoint_is_a_clear_error(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    with pytest.raises(ConfigError, match="no local endpoint named 'nope'"):
        endpoints.rollback("nope")
    endpoints.deploy("e", "m", "1", model_dir)
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=20)
    endpoints.rollback("e")
    with pytest.raises(ConfigError, match="would leave it with no deployed model"):
        endpoints.rollback("e")


def test_rollback_never_leaves_an_endpoint_without_a_model_and_changes_nothing_when_refused(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    before = (tmp_path / "endpoints" / "e.json").read_text()

    with pytest.raises(ConfigError, match="would leave it with no deployed model taking traffic"):
        endpoints.rollback("e")

    assert (tmp_path / "endpoints" / "e.json").read_text() == before


def test_a_rollback_can_be_undone_and_a_second_one_goes_further_back(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=30)
    endpoints.deploy("e", "m", "3", model_dir, traffic_percent=10)
    split = lambda state: [(m["version"], m["traffic"]) for m in state["deployed_models"]]  # noqa: E731

    assert split(endpoints.rollback("e")) == [("1", 70), ("2", 30)]
    assert split(endpoints.rollback("e")) == [("1", 100)]
    assert split(endpoints.undo_rollback("e")) == [("1", 70), ("2", 30)]
    assert split(endpoints.undo_rollback("e")) == [("1", 63), ("2", 27), ("3", 10)]
    with pytest.raises(ConfigError, match="no rollback to undo"):
        endpoints.undo_rollback("e")


def test_promote_gives_the_canary_all_traffic_and_a_rollback_restores_the_canary_split(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=20)

    promoted = endpoints.promote("e")

    assert [(m["version"], m["traffic"]) for m in promoted["deployed_models"]] == [("1", 0), ("2", 100)]
    assert [(m["version"], m["traffic"]) for m in endpoints.rollback("e")["deployed_models"]] == [("1", 80), ("2", 20)]
    with pytest.raises(ConfigError, match="no deployed model 'x'"):
        endpoints.promote("e", "x")


def test_deploying_a_directory_without_a_saved_model_changes_nothing(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    before = (tmp_path / "endpoints" / "e.json").read_text()
    with pytest.raises(ConfigError, match="holds no SavedModel"):
        endpoints.deploy("e", "m", "2", str(tmp_path))
    assert (tmp_path / "endpoints" / "e.json").read_text() == before


def test_the_state_file_records_every_deployed_version_and_each_change(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", 1, model_dir)
    endpoints.deploy("e", "m", 2, model_dir, traffic_percent=40)

    state = json.loads((tmp_path / "endpoints" / "e.json").read_text())

    assert set(state) == {"endpoint", "revision", "deployed_models", "history", "redo", "updated_at"}
    assert state["endpoint"] == "e" and state["revision"] == 2 and state["redo"] == []
    assert isinstance(state["updated_at"], float)
    first, second = state["deployed_models"]
    assert set(first) == {"id", "model", "version", "model_dir", "traffic", "deployed_at"}
    assert (first["model"], first["version"], first["model_dir"], first["traffic"]) == ("m", "1", model_dir, 60)
    assert (second["version"], second["traffic"]) == ("2", 40)
    assert first["id"].startswith("m-v1-") and len(first["id"]) == len("m-v1-") + 6
    assert state["history"] == [{"revision": 0, "deployed_models": []},
                                {"revision": 1, "deployed_models": [{**first, "traffic": 100}]}]


def test_endpoint_names_are_plain_and_listed_sorted(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    assert endpoints.names() == []
    for name in ("zebra", "penguins"):
        endpoints.deploy(name, "m", "1", model_dir)

    assert endpoints.names() == ["penguins", "zebra"]
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ConfigError, match=r"^endpoint name .* must be a plain name like 'penguins'$"):
            endpoints.path(bad)


def test_an_unknown_endpoint_names_the_ones_there_are(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    with pytest.raises(ConfigError, match=r"^no local endpoint named 'e'; endpoints: none$"):
        endpoints.rollback("e")
    endpoints.deploy("a", "m", "1", model_dir)
    endpoints.deploy("b", "m", "1", model_dir)

    with pytest.raises(ConfigError, match=r"^no local endpoint named 'e'; endpoints: a, b$"):
        endpoints.promote("e")


def test_each_change_bumps_the_revision_by_one(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    revisions = [endpoints.deploy("e", "m", "1", model_dir)["revision"],
                 endpoints.deploy("e", "m", "2", model_dir, traffic_percent=10)["revision"],
                 endpoints.promote("e")["revision"], endpoints.rollback("e")["revision"],
                 endpoints.undo_rollback("e")["revision"]]

    assert revisions == [1, 2, 3, 4, 5]


def test_promote_picks_the_newest_deploy_or_the_one_named(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=10)
    oldest = endpoints.load("e")["deployed_models"][0]["id"]

    assert [m["traffic"] for m in endpoints.promote("e")["deployed_models"]] == [0, 100]
    assert [m["traffic"] for m in endpoints.promote("e", oldest)["deployed_models"]] == [100, 0]
    with pytest.raises(ConfigError, match=rf"^endpoint 'e' has no deployed model 'nope'; it has: {oldest}, m-v2-"):
        endpoints.promote("e", "nope")


def test_keep_previous_below_zero_and_missing_history_are_named(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    with pytest.raises(ConfigError, match=r"^keep_previous must be >= 0, got -1$"):
        endpoints.deploy("e", "m", "1", model_dir, keep_previous=-1)
    endpoints.deploy("e", "m", "1", model_dir)
    with pytest.raises(ConfigError, match=r"^endpoint 'e' has no rollback to undo$"):
        endpoints.undo_rollback("e")


def test_a_rollback_to_a_split_that_only_had_a_zero_traffic_version_is_refused(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir, traffic_percent=0)  # the first version takes 100% anyway
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=100, keep_previous=1)

    state = endpoints.rollback("e")

    assert [(m["version"], m["traffic"]) for m in state["deployed_models"]] == [("1", 100)]


def test_describe_shows_each_version_with_its_share():
    from kfkit.serving.endpoints import describe

    state = {"endpoint": "penguins", "revision": 3, "deployed_models": [
        {"id": "penguins-v1-a", "model": "penguins", "version": "1", "traffic": 90},
        {"id": "penguins-v2-b", "model": "penguins", "version": "2", "traffic": 10}]}

    assert describe(state) == ("endpoint penguins (revision 3)\n"
                               "   90%  penguins-v1-a  (penguins version 1)\n"
                               "   10%  penguins-v2-b  (penguins version 2)")


def test_by_default_one_idle_version_is_kept_for_rollback(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    for version in "123":
        state = endpoints.deploy("e", "m", version, model_dir)

    assert [(m["version"], m["traffic"]) for m in state["deployed_models"]] == [("2", 0), ("3", 100)]


def test_refusals_name_the_endpoint(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    state = endpoints.load("e")
    endpoints._save({**state, "history": [], "deployed_models": []})

    with pytest.raises(ConfigError, match=r"^endpoint 'e' has no earlier traffic split to roll back to$"):
        endpoints.rollback("e")
    with pytest.raises(ConfigError, match=r"^endpoint 'e' has no deployed model to promote$"):
        endpoints.promote("e")


def test_an_undone_rollback_can_be_rolled_back_again(tmp_path, model_dir):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("e", "m", "1", model_dir)
    endpoints.deploy("e", "m", "2", model_dir, traffic_percent=30)
    endpoints.rollback("e")
    endpoints.undo_rollback("e")

    state = endpoints.rollback("e")

    assert [(m["version"], m["traffic"]) for m in state["deployed_models"]] == [("1", 100)]


def test_state_files_written_by_kfkit_0_3_still_roll_back_and_promote(tmp_path, model_dir):
    # 0.3 wrote no redo stack and no deployed_at
    endpoints = LocalEndpoints(tmp_path)
    old = {"endpoint": "e", "revision": 2, "history": [
        {"revision": 1, "deployed_models": [{"id": "a", "model": "m", "version": "1", "model_dir": model_dir,
                                             "traffic": 100}]}],
        "deployed_models": [{"id": "a", "model": "m", "version": "1", "model_dir": model_dir, "traffic": 80},
                            {"id": "b", "model": "m", "version": "2", "model_dir": model_dir, "traffic": 20,
                             "deployed_at": 5.0}]}
    endpoints.path("e").parent.mkdir(parents=True, exist_ok=True)
    endpoints.path("e").write_text(json.dumps(old))

    promoted = endpoints.promote("e")
    rolled_back = endpoints.rollback("e")

    assert [m["traffic"] for m in promoted["deployed_models"]] == [0, 100]
    assert [m["traffic"] for m in rolled_back["deployed_models"]] == [80, 20]
    assert endpoints.undo_rollback("e")["revision"] == 5
