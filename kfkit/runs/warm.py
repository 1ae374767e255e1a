"""Warm step processes for `kfkit run --local`: each step's interpreter starts, and imports what
the step will import, while the steps before it run.

kfp.local (SubprocessRunner) runs a pipeline's steps one after another, each as
`sh -ec SCRIPT SOURCE ARGS...`: the script writes the component's source to a fresh temporary
directory and runs `python -m kfp.dsl.executor_main` on it. Most of a step's time was that new
interpreter importing TensorFlow, MLflow or scikit-learn (benchmarks/pipeline.py), while this
process only waited. `warm_steps()` has kfp.local hand each step's command to a process started
for that one step a little earlier (kfkit.runs.warm_boot): the step still runs alone in a fresh
interpreter of its own, with the same environment, working directory, arguments, output and exit
status; the process merely did its imports before the step's turn. A warm process is never
reused, and whatever does not fit (another command, another environment, an import that failed)
runs the ordinary way.

`KFKIT_LOCAL_WARM=0` turns it off; `KFKIT_LOCAL_WARM=N` keeps N steps ahead warm (default 3), of
which as many as the machine has CPUs import at a time.
`KFKIT_LOCAL_WARM_LOG=FILE` appends a line per step to FILE: how it ran (warm, and how long its
turn waited for its imports; or ordinary, and why).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

AHEAD = 3
# what a kfkit step imports before its work, in the order it imports them: (the module its
# component's source names, then the libraries that module goes on to import); MODULE:FUNCTION
# calls FUNCTION after importing MODULE. Only a step whose source names the first module is warmed
# with these; every step gets kfp.dsl, which the executor imports first.
PRELOADS = {
    "bigquery_query_to_dataset": ("kfkit.components.ingest.ingest", "kfkit.warehouse.local"),
    "validate_data": ("kfkit.components.validate.validate",),
    "train_tensorflow_model": ("kfkit.components.train.train", "tensorflow"),
    "evaluate_model": ("kfkit.components.evaluate.evaluate", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
                       "kfkit.serving.model_io:tensorflow_runtime", "pyarrow.dataset", "sklearn.metrics"),
    "register_model": ("kfkit.components.evaluate.evaluate", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
                       "kfkit.serving.mlflow_pyfunc"),
    "write_model_card": ("kfkit.components.evaluate.evaluate",),
}
BASE = ("kfp.dsl",)
BOOT = Path(__file__).with_name("warm_boot.py")
# the script's first half, then the environment its python gets: run by sh, as kfp.local's script is
PREPARE = ('program_path=$(mktemp -d)\n\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n'
           'printf "%s\\0" "$program_path"\n_KFP_RUNTIME=true env -0\n')
ENVIRONMENT = '_KFP_RUNTIME=true env -0\n'
# set in this process's environment while the steps run (MLflow's import here, kfkit.runs.local's
# _preload_tracking, names its telemetry session for the processes it starts): a warm process
# started before gets the step's value with its arguments
VOLATILE = frozenset({"_MLFLOW_TELEMETRY_SESSION_ID"})


def ahead() -> int:
    """How many steps ahead to keep warm: KFKIT_LOCAL_WARM (0 turns warm steps off)."""
    value = os.environ.get("KFKIT_LOCAL_WARM", "")
    try:
        return max(int(value), 0) if value.strip() else AHEAD
    except ValueError:
        return AHEAD


def preload(function: str, source: str) -> tuple[str, ...]:
    """The modules a step of `function` (its component's `source`) imports before its work."""
    modules = PRELOADS.get(function, ())
    if modules and modules[0] not in source:
        modules = ()
    return BASE + tuple(modules)


def script(python: str) -> str:
    """kfp.local's step script for a lightweight component, with its python as kfp.local runs it."""
    from kfp.dsl import component_factory

    def function():
        pass

    command, _ = component_factory._get_command_and_args_for_lightweight_component(function)
    return command[2].replace("python3", python)


def _step_environment(env_vars: dict[str, str] | None) -> dict[str, str] | None:
    """The environment kfp.local gives a step's shell (run_local_subprocess's)."""
    return {**os.environ, **env_vars} if env_vars else None


def _environ(output: bytes) -> list[tuple[str, str]]:
    pairs = []
    for entry in output.split(b"\0"):
        if entry:
            name, _, value = entry.partition(b"=")
            pairs.append((os.fsdecode(name), os.fsdecode(value)))
    return pairs


def _stable(environ: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in environ if name not in VOLATILE]


def _shell_environment(env: dict[str, str] | None) -> list[tuple[str, str]]:
    """The environment, in order, that the step script's python gets from sh."""
    done = subprocess.run(["sh", "-ec", ENVIRONMENT], env=env, capture_output=True, check=True)
    return _environ(done.stdout)


def _wait_readable(fds: list[int]) -> list[int]:
    """The fds that have something to read (or their end), waiting until one does."""
    import select

    if not hasattr(select, "poll"):
        return select.select(fds, [], [])[0]
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll()]


def _note(function: str, how: str) -> None:
    path = os.environ.get("KFKIT_LOCAL_WARM_LOG")
    if path:
        with contextlib.suppress(OSError), open(path, "a") as log:
            log.write(f"{function}: {how}\n")


class WarmProcess:
    """One step's interpreter, started ahead with its imports; used once or discarded."""

    def __init__(self, modules: tuple[str, ...], environ: list[tuple[str, str]]):
        self.modules = modules
        self.environ = environ
        self.cwd = os.getcwd()
        self.status: bool | None = None  # whether its imports went well, once it said
        self._lock = threading.Lock()
        request_read, self._request = os.pipe()
        self.control, control_write = os.pipe()  # closed by close(), never while a select may watch it
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", BOOT.read_text(), str(request_read), str(control_write), *modules],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=dict(environ),
                pass_fds=(request_read, control_write))
        except BaseException:
            os.close(self._request)
            os.close(self.control)
            raise
        finally:
            os.close(request_read)
            os.close(control_write)
        # its output is read from the start, so that an import that prints more than a pipe holds
        # never waits on the step's turn; the step's turn prints it all, as it comes
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name="kfkit-warm-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, ""):
            self.lines.put(line)
        self.lines.put(None)

    def ready(self) -> bool:
        """Wait for its imports; whether it can take its step."""
        with self._lock:
            if self.status is None:
                line = b""
                while not line.endswith(b"\n") and (chunk := os.read(self.control, 64)):
                    line += chunk
                self.status = line.strip() == b"ready"
            return self.status

    def start(self, args: list[str], environ: list[tuple[str, str]]) -> None:
        """The step's executor arguments, and its environment when that differs in VOLATILE names."""
        request = {"args": args}
        now, then = dict(environ), dict(self.environ)
        changed = {name: now.get(name) for name in VOLATILE if now.get(name) != then.get(name)}
        if changed:
            request["environ"] = changed  # None: unset
        with os.fdopen(self._request, "wb") as pipe:
            self._request = None
            pipe.write(json.dumps(request).encode())

    def discard(self) -> None:
        """End it, unless it took its step (then it ends as the step does)."""
        if self._request is not None:
            os.close(self._request)
            self._request = None
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self._reader.join()
            self.process.stdout.close()

    def close(self) -> None:
        self.discard()
        if self.control is not None:
            os.close(self.control)
            self.control = None


@dataclass
class Planned:
    function: str
    source: str
    env_vars: dict[str, str]
    conditional: bool = False  # under a dsl.If/Elif/Else: of a branch's twins, one runs


def plan(pipeline) -> list[Planned]:
    """The pipeline's lightweight steps in the order kfp.local runs them (a guess for a branch)."""
    from kfp.local import graph_utils

    from google.protobuf import json_format

    spec = pipeline.pipeline_spec
    executors = json_format.MessageToDict(spec.deployment_spec).get("executors", {})
    steps: list[Planned] = []

    def walk(dag, conditional: bool) -> None:
        stack = graph_utils.topological_sort_tasks(dict(dag.tasks))
        while stack:
            task = dag.tasks[stack.pop()]
            component = spec.components[task.component_ref.name]
            if component.HasField("dag"):
                walk(component.dag, conditional or bool(task.trigger_policy.condition))
                continue
            container = executors.get(component.executor_label, {}).get("container", {})
            command, args = list(container.get("command", [])), list(container.get("args", []))
            if len(command) == 4 and command[:2] == ["sh", "-ec"] and "--function_to_execute" in args:
                function = args[args.index("--function_to_execute") + 1]
                env_vars = {e["name"]: e["value"] for e in container.get("env", [])}
                steps.append(Planned(function, command[3], env_vars, conditional))

    walk(spec.root.dag, False)
    return steps


class WarmSteps:
    """Starts the next steps' processes in the pipeline's order (a thread: at most `count` warm at
    once, at most `importing` of them still importing) and runs each step command in one that fits."""

    def __init__(self, steps: list[Planned], count: int, importing: int | None = None, settled=None):
        self.settled = settled  # called once, when an import place is free and no warm process can start
        self.pending = list(steps)  # planned steps neither warmed nor run yet
        self.count = count
        self.importing = importing or os.cpu_count() or 1
        self.branched: set[str] = set()  # functions of conditional steps warmed or run: their twins are not
        self.warm: list[WarmProcess] = []  # started, not yet taken
        self.all: list[WarmProcess] = []
        self.script = script(sys.executable)
        self.changed = threading.Condition()
        self.stopping = False
        self._wake_read, self._wake = os.pipe()
        self.thread = threading.Thread(target=self._schedule, name="kfkit-warm-steps", daemon=True)

    def _done(self, step: Planned) -> None:
        self.pending.remove(step)
        if step.conditional:
            self.branched.add(step.function)
            self.pending = [s for s in self.pending if not (s.conditional and s.function == step.function)]

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake, b".")

    def _next(self) -> Planned | None:
        """The next step to warm, when a place is free (under self.changed)."""
        importing = sum(1 for p in self.warm if p.status is None)
        if self.stopping or not self.pending or len(self.warm) >= self.count or importing >= self.importing:
            return None
        step = self.pending[0]
        self._done(step)
        return step

    def _warm(self, step: Planned) -> None:
        try:
            environ = _shell_environment(_step_environment(step.env_vars))
            process = WarmProcess(preload(step.function, step.source), environ)
        except (OSError, subprocess.SubprocessError):
            return
        with self.changed:
            self.all.append(process)
            self.warm.append(process)
            self.changed.notify_all()

    def start(self) -> None:
        """The first step's process now (the run starts with it), the others from a thread."""
        with self.changed:
            step = self._next()
        if step is not None:
            self._warm(step)
        self.thread.start()

    def _schedule(self) -> None:
        while True:
            with self.changed:
                if self.stopping:
                    return
                step = self._next()
                watched = [p for p in self.warm if p.status is None]
            if step is not None:
                self._warm(step)
                continue
            if len(watched) < self.importing:  # an import place this cannot use now
                self._settle()
            readable = _wait_readable([self._wake_read] + [p.control for p in watched])
            if self._wake_read in readable:
                os.read(self._wake_read, 4096)
            for process in watched:
                if process.control in readable:
                    process.ready()
            with self.changed:
                self.changed.notify_all()

    def _settle(self) -> None:
        settled, self.settled = self.settled, None
        if settled is not None:
            settled()

    def wait_started(self, count: int, timeout: float = 60) -> bool:
        """Wait until `count` processes were started (for tests)."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.all) >= count, timeout)

    def _take(self, function: str, modules: tuple[str, ...]) -> WarmProcess | None:
        with self.changed:
            process = next((p for p in self.warm if p.modules == modules), None)
            if process is not None:
                self.warm.remove(process)
            else:  # it runs the ordinary way: its planned place is taken now
                step = next((s for s in self.pending if s.function == function), None)
                if step is not None:
                    self._done(step)
        self.wake()
        return process

    def run(self, full_command: list[str], env_vars: dict[str, str] | None, original) -> int:
        """kfp.local's run_local_subprocess, in a warm process where one fits the command."""
        if not (len(full_command) >= 4 and full_command[:2] == ["sh", "-ec"] and full_command[2] == self.script
                and "--function_to_execute" in full_command[4:-1]):
            _note("?", "ordinary (not a lightweight component's command)")
            return original(full_command=full_command, env_vars=env_vars)
        source, args = full_command[3], full_command[4:]
        function = args[args.index("--function_to_execute") + 1]
        process = self._take(function, preload(function, source))
        if process is None:
            _note(function, "ordinary (no warm process)")
            return original(full_command=full_command, env_vars=env_vars)
        # the script's first half: the component's source in a fresh temporary directory
        try:
            prepared = subprocess.run(["sh", "-ec", PREPARE, source], env=_step_environment(env_vars),
                                      capture_output=True, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            _note(function, f"ordinary (its program directory: {exc})")
            process.discard()
            return original(full_command=full_command, env_vars=env_vars)
        program_path, _, environ = prepared.partition(b"\0")
        program_path = os.fsdecode(program_path)
        waited = time.perf_counter()
        ready = process.ready()
        waited = time.perf_counter() - waited
        now = _environ(environ)
        changed = sorted({k for k, _ in set(now) ^ set(process.environ)} - VOLATILE)
        why = ("its imports failed" if not ready else f"another environment: {', '.join(changed)}"
               if _stable(now) != _stable(process.environ) else
               "another directory" if process.cwd != os.getcwd() else "")
        if why:
            _note(function, f"ordinary ({why})")
            process.discard()
            shutil.rmtree(program_path, ignore_errors=True)
            return original(full_command=full_command, env_vars=env_vars)
        try:
            process.start(["--component_module_path", f"{program_path}/ephemeral_component.py", *args], now)
        except OSError as exc:  # it ended before its turn (killed): the step has not started
            _note(function, f"ordinary (the warm process ended: {exc})")
            process.discard()
            shutil.rmtree(program_path, ignore_errors=True)
            return original(full_command=full_command, env_vars=env_vars)
        _note(function, f"warm (waited {waited:.2f}s for its imports)")
        # as run_local_subprocess prints and ends a step's output
        with process.process as popen:
            while (line := process.lines.get()) is not None:
                print(line, end="")
            print("\n")
            return popen.wait()

    def close(self) -> None:
        with self.changed:
            self.stopping = True
        self.wake()
        if self.thread.is_alive():
            self.thread.join()
        self._settle()
        for process in self.all:
            process.close()
        os.close(self._wake_read)
        os.close(self._wake)


@contextlib.contextmanager
def warm_steps(pipeline, settled=None):
    """kfp.local runs this pipeline's lightweight steps in warm processes (subprocess runner only).

    `settled` (optional) is called once an import place is free that no step can take yet (at once
    without warm steps; at the end at the latest): the caller's own background imports wait for
    it rather than slow the first steps' imports.
    """
    from kfp.local import subprocess_task_handler

    count = ahead()
    original = getattr(subprocess_task_handler, "run_local_subprocess", None)
    steps = None
    if count and original is not None and sys.platform != "win32":
        try:
            steps = WarmSteps(plan(pipeline), count, settled=settled)
        except Exception:  # noqa: BLE001 - a spec this cannot read runs the ordinary way
            steps = None
    if steps is None:
        if settled is not None:
            settled()
        yield None
        return

    def run_local_subprocess(full_command, env_vars=None):
        return steps.run(list(full_command), env_vars, original)

    subprocess_task_handler.run_local_subprocess = run_local_subprocess
    try:
        steps.start()
        yield steps
    finally:
        subprocess_task_handler.run_local_subprocess = original
        steps.close()
