"""Warm step processes (kfkit.runs.warm): a step run in a process started ahead sees what it would
see started the ordinary way, fails the same way, and shares nothing with the steps around it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl, local

from kfkit.runs import warm


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def describe(marker: str) -> str:
    import json
    import os
    import sys

    import kfp

    leaked = os.environ.get("KFKIT_TEST_LEAK", "")
    module_leak = getattr(kfp, "kfkit_test_leak", "")
    os.environ["KFKIT_TEST_LEAK"] = marker  # a later step must not see either
    kfp.kfkit_test_leak = marker
    main = sys.modules["__main__"]
    return json.dumps({
        "environ": [(k, v) for k, v in os.environ.items() if k not in ("_MLFLOW_TELEMETRY_SESSION_ID", "KFKIT_TEST_LEAK")],
        "argv0": sys.argv[0], "args": sys.argv[1:], "orig_argv": sys.orig_argv[1:3], "path0": sys.path[0],
        "main": main.__spec__.name, "main_names": sorted(k for k in vars(main) if k.startswith("__")),
        "cwd": os.getcwd(), "leaked": leaked, "module_leak": module_leak,
        "session": os.environ.get("_MLFLOW_TELEMETRY_SESSION_ID"), "pid": os.getpid(),
        "stdin": os.path.realpath("/proc/self/fd/0") if os.path.exists("/proc/self/fd/0") else "",
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else [],
    })


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fails(after: str):
    def inner():
        raise ValueError("the step failed on purpose")

    print("before the failure")
    inner()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def exits_3(after: str):
    import sys

    sys.exit(3)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def ok() -> str:
    return "\"ok\""


@dsl.pipeline(name="describe-twice")
def describe_twice():
    first = describe(marker="first")
    describe(marker="second").after(first)


@dsl.pipeline(name="fails-second")
def fails_second():
    fails(after=ok().output)


@dsl.pipeline(name="fails-before-two")
def fails_before_two():
    failed = fails(after=ok().output)
    describe_twice().after(failed)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def draws() -> str:
    import numpy

    return str(numpy.random.random())


@dsl.pipeline(name="draws-twice")
def draws_twice():
    draws().after(draws())


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def reads_marker() -> str:
    import json

    import kfkit_test_marker

    return json.dumps(kfkit_test_marker.VALUE)


@dsl.pipeline(name="reads-marker")
def reads_marker_once():
    reads_marker()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def writes_at_exit(path: str):
    import atexit

    handle = open(path, "w")  # the step's first file: the lowest free fd
    atexit.register(lambda: (handle.write("written at exit\n"), handle.close()))


@dsl.pipeline(name="writes-at-exit")
def writes_at_exit_once(path: str):
    writes_at_exit(path=path)


@dsl.pipeline(name="exits-second")
def exits_second():
    exits_3(after=ok().output)


@pytest.fixture(autouse=True)
def forks_test_components(monkeypatch):
    """This file's components stand in for kfkit's: the zygote forks them too."""
    real = warm.forkable
    monkeypatch.setattr(warm, "forkable", lambda function, source: True)
    return real


@pytest.fixture(params=["forked", "warm"])
def kind(request, monkeypatch):
    """How a warm step runs: forked from the run's zygote, or in an interpreter of its own (KFKIT_LOCAL_FORK=0)."""
    if request.param == "warm":
        monkeypatch.setenv("KFKIT_LOCAL_FORK", "0")
    else:
        monkeypatch.delenv("KFKIT_LOCAL_FORK", raising=False)
    return request.param


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KFKIT_LOCAL_WARM_LOG", str(tmp_path / "warm.log"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"),
               raise_on_error=False)
    return tmp_path


def run(pipeline, tmp_path: Path, monkeypatch, how: str, pipeline_spec=None):
    """Run the pipeline with warm steps on ("warm") or off ("ordinary"); the step outputs by task."""
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "2" if how == "warm" else "0")
    before = set((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else set()
    with warm.warm_steps(pipeline_spec or pipeline):
        pipeline()
    [run_dir] = set((tmp_path / "runs").glob("*")) - before
    outputs = {}
    for task in sorted(p for p in run_dir.iterdir() if (p / "executor_output.json").exists()):
        data = json.loads((task / "executor_output.json").read_text())
        outputs[task.name] = json.loads(data.get("parameterValues", {}).get("Output", "null"))
    return outputs


def ways(tmp_path: Path) -> list[str]:
    import re

    path = tmp_path / "warm.log"
    return [re.sub(r" \(waited .*\)$", "", line) for line in path.read_text().splitlines()] if path.exists() else []


def comparable(described: dict) -> dict:
    described = dict(described)
    described.pop("pid")
    described.pop("path0")  # the program directory (the executor puts it first)
    # the one difference the test itself makes
    described["environ"] = [pair for pair in described["environ"] if pair[0] != "KFKIT_LOCAL_WARM"]
    # each step's program directory is new: mktemp -d
    described["args"] = [a if not a.endswith("ephemeral_component.py") else "PROGRAM" for a in described["args"]]
    described["args"] = [a if not a.startswith("{") else "EXECUTOR_INPUT" for a in described["args"]]
    return described


def test_a_warm_step_sees_what_an_ordinary_step_sees(runs, monkeypatch, kind):
    ordinary = run(describe_twice, runs, monkeypatch, "ordinary")
    assert ways(runs) == []

    warmed = run(describe_twice, runs, monkeypatch, "warm")

    assert ways(runs) == [f"describe: {kind}", f"describe: {kind}"]
    assert set(warmed) == set(ordinary) == {"describe", "describe-2"}
    for task in ordinary:
        assert comparable(warmed[task]) == comparable(ordinary[task])
    assert warmed["describe"]["main"] == "kfp.dsl.executor_main"
    assert warmed["describe"]["argv0"].endswith("kfp/dsl/executor_main.py")
    assert warmed["describe"]["path0"].startswith(os.environ.get("TMPDIR", "/tmp") + "/tmp.")


def test_a_warm_step_shares_nothing_with_the_step_before_it(runs, monkeypatch):
    warmed = run(describe_twice, runs, monkeypatch, "warm")

    first, second = warmed["describe"], warmed["describe-2"]
    assert first["pid"] != second["pid"]
    assert second["leaked"] == "" and second["module_leak"] == ""


def failing_step_output(out: str, task: str) -> list[str]:
    """What the failing task printed, without times and with its program directory named PROGRAM."""
    import re

    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "Executing task" in line and f"'{task}'" in line)
    last = next(i for i, line in enumerate(lines) if i > first and "finished with status" in line)
    return [re.sub(r"/tmp/tmp\.\w+", "PROGRAM", re.sub(r"\d{4}-\d\d-\d\d[ -]\d\d[:-]\d\d[:-]\d\d[,-]\d+", "TIME", line))
            for line in lines[first + 1:last + 1] if not re.match(r"^\d\d:\d\d:\d\d\.\d+ - INFO - Streamed", line)]


@pytest.mark.parametrize("pipeline, task", [(fails_second, "fails"), (exits_second, "exits-3")],
                         ids=["exception", "sys.exit(3)"])
def test_a_warm_step_fails_as_an_ordinary_one_does(runs, monkeypatch, capfd, pipeline, task, kind):
    run(pipeline, runs, monkeypatch, "ordinary")
    ordinary = failing_step_output(capfd.readouterr().out, task)

    run(pipeline, runs, monkeypatch, "warm")
    warmed = failing_step_output(capfd.readouterr().out, task)

    assert ways(runs)[-1].endswith(f": {kind}")
    assert "FAILURE" in warmed[-1]
    assert [line[15:] if line[:2].isdigit() else line for line in warmed] == [
        line[15:] if line[:2].isdigit() else line for line in ordinary]
    if task == "fails":
        traceback = [line.strip() for line in warmed if line.strip().startswith(("Traceback", "File", "ValueError"))]
        assert traceback[:2] == ["Traceback (most recent call last):",
                                 'File "<frozen runpy>", line 198, in _run_module_as_main']
        assert traceback[-1] == "ValueError: the step failed on purpose"


def test_a_step_whose_environment_changed_since_its_start_runs_the_ordinary_way(runs, monkeypatch):
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "2")
    with warm.warm_steps(describe_twice) as steps:
        assert steps.wait_started(2)
        monkeypatch.setenv("KFKIT_TEST_CHANGED", "after the warm processes started")
        describe_twice()

    assert ways(runs)[0] == "describe: ordinary (another environment: KFKIT_TEST_CHANGED)"


def test_mlflows_telemetry_session_named_after_the_start_reaches_the_warm_step(runs, monkeypatch, kind):
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "2")
    monkeypatch.delenv("_MLFLOW_TELEMETRY_SESSION_ID", raising=False)
    with warm.warm_steps(describe_twice) as steps:
        assert steps.wait_started(2)
        # as the CLI's own MLflow import does while the steps run
        monkeypatch.setenv("_MLFLOW_TELEMETRY_SESSION_ID", "named-later")
        describe_twice()

    assert ways(runs) == [f"describe: {kind}", f"describe: {kind}"]
    [run_dir] = (runs / "runs").glob("*")
    for task in ("describe", "describe-2"):
        output = json.loads((run_dir / task / "executor_output.json").read_text())["parameterValues"]["Output"]
        assert json.loads(output)["session"] == "named-later"


def test_a_step_whose_imports_failed_runs_the_ordinary_way(runs, monkeypatch):
    monkeypatch.setitem(warm.PRELOADS, "describe", ("kfkit.no_such_module",))
    monkeypatch.setattr(warm, "preload", lambda function, source: ("kfkit.no_such_module",))
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "2")

    with warm.warm_steps(describe_twice):
        describe_twice()

    assert ways(runs) == ["describe: ordinary (its imports failed)"] * 2


@pytest.fixture
def started(monkeypatch) -> list:
    """The processes the run's warm steps start, as they start."""
    processes = []
    original = warm.WarmProcess.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        processes.append(self.process)

    monkeypatch.setattr(warm.WarmProcess, "__init__", record)
    return processes


def test_the_processes_not_needed_end_with_the_run(runs, monkeypatch, started):
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "5")
    with warm.warm_steps(fails_second):
        fails_second()

    assert started and all(process.poll() is not None for process in started)


def test_a_run_ends_when_the_steps_warmed_ahead_never_get_their_turn(runs, monkeypatch, kind, started):
    import threading

    monkeypatch.setenv("KFKIT_LOCAL_WARM", "5")

    def run_it():
        with warm.warm_steps(fails_before_two):
            fails_before_two()

    # a hang here (a process ahead holding an output open) fails the test instead of the suite
    runner = threading.Thread(target=run_it, daemon=True)
    runner.start()
    runner.join(timeout=120)

    assert not runner.is_alive()
    assert len(started) == 4 and all(process.poll() is not None for process in started)


def test_forked_steps_draw_their_own_random_numbers(runs, monkeypatch, kind):
    monkeypatch.setitem(warm.PRELOADS, "draws", ("numpy", "numpy.random"))  # its state made before the fork

    drawn = run(draws_twice, runs, monkeypatch, "warm")

    assert ways(runs) == [f"draws: {kind}"] * 2
    assert drawn["draws"] != drawn["draws-2"]


def test_a_zygote_running_threads_forks_no_step(runs, monkeypatch, tmp_path):
    monkeypatch.delenv("KFKIT_LOCAL_FORK", raising=False)
    (tmp_path / "kfkit_test_threads.py").write_text(
        "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(warm, "preload", lambda function, source: ("kfp.dsl", "kfkit_test_threads"))

    outputs = run(describe_twice, runs, monkeypatch, "warm")

    assert ways(runs) == ["describe: ordinary (its zygote runs threads and cannot fork)"] * 2
    assert set(outputs) == {"describe", "describe-2"}


@pytest.fixture
def kept(monkeypatch):
    """Zygotes outlive their run for 60 s; those the test started end with it."""
    monkeypatch.setenv("KFKIT_LOCAL_KEEP", "60")
    monkeypatch.delenv("KFKIT_LOCAL_FORK", raising=False)
    before = set(warm.kept_places())
    yield
    for place in set(warm.kept_places()) - before:
        warm.end_kept(place)


@pytest.mark.parametrize("change", ["edited", "shadowed"])
def test_a_kept_zygote_serves_the_next_run_until_what_it_imported_changes(runs, monkeypatch, tmp_path, kept, change):
    marker, earlier = tmp_path / "late" / "kfkit_test_marker.py", tmp_path / "early"
    marker.parent.mkdir()
    earlier.mkdir()
    marker.write_text('VALUE = "first"\n')
    os.utime(marker, (1e9, 1e9))  # written long before (a file changed as the zygote starts is never kept)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(earlier), str(marker.parent),
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(warm, "preload", lambda function, source: ("kfp.dsl", "kfkit_test_marker"))

    def kept_zygote() -> bool:
        last = (tmp_path / "warm.log").read_text().splitlines()[-1]
        assert last.startswith("reads_marker: forked")
        return last.endswith("; a kept zygote)")

    first = run(reads_marker_once, runs, monkeypatch, "warm")["reads-marker"]
    first_kept = kept_zygote()
    again = run(reads_marker_once, runs, monkeypatch, "warm")["reads-marker"]
    again_kept = kept_zygote()
    # edited in place, or a module of the same name now found first on the path
    (marker if change == "edited" else earlier / marker.name).write_text('VALUE = "changed"\n')
    changed = run(reads_marker_once, runs, monkeypatch, "warm")["reads-marker"]
    changed_kept = kept_zygote()

    assert (first, first_kept) == ("first", False)
    assert (again, again_kept) == ("first", True)
    assert (changed, changed_kept) == ("changed", False)


def test_a_zygote_is_not_kept_where_another_user_could_listen(runs, monkeypatch, tmp_path, kept):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # as a directory any user may write to
    monkeypatch.setattr(warm, "_kept_directory", lambda: shared)
    monkeypatch.setattr(warm, "_place", lambda modules, environ: shared / "zygote.sock")

    with warm.warm_steps(describe_twice) as steps:
        describe_twice()

    assert steps.zygote.process.wait(timeout=60) is not None
    assert ways(runs) == ["describe: forked"] * 2 and list(shared.iterdir()) == []


def test_a_zygote_ends_with_its_run_under_kfkit_local_keep_0(runs, monkeypatch):
    monkeypatch.setenv("KFKIT_LOCAL_KEEP", "0")
    monkeypatch.delenv("KFKIT_LOCAL_FORK", raising=False)
    with warm.warm_steps(describe_twice) as steps:
        describe_twice()

    assert steps.zygote.process.wait(timeout=60) is not None
    assert ways(runs) == ["describe: forked"] * 2


INTERRUPTED_RUN = """
import sys
from kfp import dsl, local
from kfkit.runs import warm

@dsl.component(base_image="python:3.11", install_kfp_package=False)
def blocks(pid_file: str):
    import os
    import threading

    with open(pid_file + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    threading.Event().wait()

@dsl.pipeline(name="blocks")
def blocks_once(pid_file: str):
    blocks(pid_file=pid_file)

warm.forkable = lambda function, source: True  # a stand-in for kfkit's own components
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])
with warm.warm_steps(blocks_once):
    blocks_once(pid_file=sys.argv[1])
"""


# the run started as a terminal starts it, SIGINT not ignored: a process started in the background by
# a shell without job control ignores SIGINT, and its children inherit that (the run would outlive
# its SIGINT, as this test did whenever the suite was started so)
AS_IN_A_TERMINAL = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_step_forked_by_a_kept_zygote_ends_with_its_interrupted_or_killed_run(tmp_path, monkeypatch, kept, how):
    import signal
    import time

    pid_file, script = tmp_path / "step.pid", tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_RUN)  # a file: kfp reads a component's source from it
    run = subprocess.Popen([sys.executable, "-c", AS_IN_A_TERMINAL, str(script), str(pid_file), str(tmp_path / "runs")],
                           env={**os.environ, "KFKIT_LOCAL_WARM_LOG": str(tmp_path / "warm.log")},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not pid_file.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the step's start: nothing to wait on but its file
    step = int(pid_file.read_text())

    def signals(pid) -> str:
        status = Path(f"/proc/{pid}/status")
        return " ".join(line.replace("\t", "=") for line in status.read_text().splitlines()
                        if line.startswith(("SigBlk", "SigIgn", "SigCgt"))) if status.exists() else "gone"

    def running(pid) -> bool:
        try:  # the step may end between any two reads of /proc
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    before = f"run {signals(run.pid)}; step {signals(step)}; pytest {signals(os.getpid())}"
    # as the terminal's Ctrl-C, timeout or a cancelled job reach the run (the step is not in its group)
    run.send_signal(getattr(signal, how))
    try:
        run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # what each process blocked, ignored and caught when the signal was sent: the first thing to read
        run.kill()
        raise subprocess.TimeoutExpired(f"the run, after {how} (signals before it: {before})", 60) from None

    assert (tmp_path / "warm.log").read_text().startswith("blocks: forked")
    deadline = time.monotonic() + 60
    while running(step) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(step)


def test_a_warm_steps_exit_handlers_still_write_its_files(runs, monkeypatch, tmp_path, kind):
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "2")
    written = tmp_path / "at-exit.txt"

    with warm.warm_steps(writes_at_exit_once):
        writes_at_exit_once(path=str(written))

    assert ways(runs) == [f"writes_at_exit: {kind}"]
    assert written.read_text() == "written at exit\n"


def test_a_zygote_is_stale_once_a_file_it_imported_changes_even_before_that_import(tmp_path, monkeypatch):
    from kfkit.runs import warm_boot

    old, edited = tmp_path / "kfkit_test_old.py", tmp_path / "kfkit_test_edited.py"
    for module in (old, edited):
        module.write_text("VALUE = 1\n")
        os.utime(module, (1e9, 1e9))  # written long before the zygote
    monkeypatch.syspath_prepend(str(tmp_path))
    imports = warm_boot._Imports()
    edited.write_text("VALUE = 2\n")  # while the zygote imports other modules, before its own import

    import kfkit_test_edited  # noqa: F401
    import kfkit_test_old  # noqa: F401

    imports.note()
    stale_after_the_edit = imports.stale()
    os.utime(edited, (1e9, 1e9))  # as if edited long before a later zygote
    later = warm_boot._Imports()
    later.note()
    later_stale = later.stale()
    old.write_text("VALUE = 3\n")

    assert stale_after_the_edit and not later_stale
    assert later.stale()


def test_only_kfkit_components_are_forked_and_a_users_runs_warm(runs, monkeypatch, forks_test_components):
    monkeypatch.setattr(warm, "forkable", forks_test_components)
    monkeypatch.delenv("KFKIT_LOCAL_FORK", raising=False)
    ingest = "from kfkit.components.ingest.ingest import run_ingest"

    outputs = run(describe_twice, runs, monkeypatch, "warm")

    assert ways(runs) == ["describe: warm"] * 2 and set(outputs) == {"describe", "describe-2"}
    assert warm.forkable("bigquery_query_to_dataset", ingest)
    assert not warm.forkable("bigquery_query_to_dataset", "def bigquery_query_to_dataset(): ...")


def test_a_kept_zygote_is_only_for_runs_under_the_same_umask():
    modules, environ = ("kfp.dsl",), [("HOME", "/root")]
    before = warm._place(modules, environ)
    previous = os.umask(0o077)
    try:
        under_077 = warm._place(modules, environ)
    finally:
        os.umask(previous)

    assert under_077 != before and warm._place(modules, environ) == before


def test_a_run_leaves_a_busy_zygote_be_and_starts_one_of_its_own(tmp_path, monkeypatch, kept):
    import socket

    assert not tmp_path.stat().st_mode & 0o077  # a directory a zygote may be kept in

    place = tmp_path / "busy.sock"
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # listens, never answers: serving another run
    busy.bind(str(place))
    busy.listen(4)
    monkeypatch.setattr(warm, "_kept_directory", lambda: tmp_path)
    monkeypatch.setattr(warm, "_place", lambda modules, environ: place)

    zygote = warm.Zygote(("kfp.dsl",), warm._shell_environment(None), keep=60)
    try:
        own = zygote._private is not None and not zygote.reused
    finally:
        zygote.close()
        busy.close()

    assert own and place.exists()


def test_a_kfkit_step_is_warmed_with_its_own_imports_only_when_its_source_names_them():
    assert warm.preload("train_tensorflow_model", "from kfkit.components.train.train import train") == (
        "kfp.dsl", "kfkit.components.train.train", "tensorflow")
    assert warm.preload("train_tensorflow_model", "def train_tensorflow_model(): pass") == ("kfp.dsl",)
    assert warm.preload("add", "def add(a, b): return a + b") == ("kfp.dsl",)


def test_the_training_pipeline_plans_its_steps_in_order():
    from kfkit import pipelines

    planned = [step.function for step in warm.plan(pipelines.load("training"))]

    assert planned[:2] == ["bigquery_query_to_dataset", "validate_data"]
    # then one of the branches (train; or tune, then train), in the spec's order
    assert "train_tensorflow_model" in planned[2:4] and planned.index("evaluate_model") == 5
    assert {"evaluate_model", "register_model", "write_model_card"} <= set(planned)
    assert set(warm.PRELOADS) <= set(planned)


def test_warm_steps_are_off_with_kfkit_local_warm_0(monkeypatch):
    from kfp.local import subprocess_task_handler

    monkeypatch.setenv("KFKIT_LOCAL_WARM", "0")
    original = subprocess_task_handler.run_local_subprocess
    with warm.warm_steps(describe_twice):
        assert subprocess_task_handler.run_local_subprocess is original
    assert warm.ahead() == 0
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "many")
    assert warm.ahead() == warm.AHEAD


def test_the_script_it_recognises_is_kfp_locals(monkeypatch):
    assert "kfp.dsl.executor_main" in warm.script(sys.executable)
    assert sys.executable in warm.script(sys.executable)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def after_a_loud_import() -> str:
    return '"done"'


@dsl.pipeline(name="loud")
def loud():
    after_a_loud_import()


def test_an_import_that_prints_more_than_a_pipe_holds_does_not_hold_the_step_up(runs, monkeypatch, tmp_path, capfd, kind):
    # a module that prints 1 MB when imported, on the steps' path
    (tmp_path / "kfkit_test_loud.py").write_text("for _ in range(1024):\n    print('y' * 1023)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setattr(warm, "preload", lambda function, source: ("kfkit_test_loud",))

    outputs = run(loud, runs, monkeypatch, "warm")

    assert ways(runs) == [f"after_a_loud_import: {kind}"]
    assert outputs == {"after-a-loud-import": "done"}
    assert capfd.readouterr().out.count("y" * 1023) == 1024


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def exits_quickly(marker: str) -> str:
    import atexit

    from kfkit import quick_exit

    # registered before the quick exit, so it runs after it: skipped when the exit is quick
    atexit.register(lambda: open(marker, "w").write("teardown ran"))
    assert quick_exit.after_success()
    return '"done"'


@dsl.pipeline(name="quick")
def quick(marker: str):
    exits_quickly(marker=marker)


def test_a_warm_step_that_succeeded_still_exits_without_the_teardown(runs, monkeypatch, kind):
    marker = runs / "teardown"

    outputs = run(lambda: quick(marker=str(marker)), runs, monkeypatch, "warm", pipeline_spec=quick)

    assert ways(runs) == [f"exits_quickly: {kind}"]
    assert outputs == {"exits-quickly": "done"}
    assert not marker.exists()


def test_the_callers_own_imports_wait_for_a_free_place_and_happen_once(runs, monkeypatch):
    calls = []
    monkeypatch.setenv("KFKIT_LOCAL_WARM", "2")
    with warm.warm_steps(describe_twice, settled=lambda: calls.append("settled")):
        describe_twice()
    assert calls == ["settled"]

    monkeypatch.setenv("KFKIT_LOCAL_WARM", "0")
    with warm.warm_steps(describe_twice, settled=lambda: calls.append("at once")):
        assert calls == ["settled", "at once"]
