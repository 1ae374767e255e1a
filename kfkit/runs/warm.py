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

Where fork exists (Linux), kfkit's own steps come from a zygote (class Zygote) rather than each
importing for itself: it imports every planned step's modules once, in the steps' order, and forks
each step's process once it has that step's imports, so TensorFlow and MLflow are imported once a
run (a user's component, which would then hold every other step's imports, runs warm instead). A
forked step reseeds numpy's global random state, as a new interpreter would, and ends with its run
however the run ends; a zygote running a Python thread forks nothing (its steps run the ordinary
way). The threads native libraries keep at that point (OpenBLAS's, Arrow's jemalloc) have their
own fork handlers. The zygote is kept KFKIT_LOCAL_KEEP seconds (default 600) for the next run
with the same imports, interpreter, directory, environment and process settings, while nothing it
imported has changed. `KFKIT_LOCAL_FORK=0` gives each warm step an interpreter of its own instead.

`KFKIT_LOCAL_WARM=0` turns it off; `KFKIT_LOCAL_WARM=N` keeps N steps ahead warm (default 3, and
every planned step when they are forked), of which as many as the machine has CPUs import at a time.
`KFKIT_LOCAL_WARM_LOG=FILE` appends a line per step to FILE: how it ran (warm, and how long its
turn waited for its imports; or ordinary, and why).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
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
VOLATILE = frozenset({"_MLFLOW_TELEMETRY_SESSION_ID",
                      # kfkit's own, read by the run and not its steps: a zygote kept from the
                      # previous run serves the next one even where these differ
                      "KFKIT_LOCAL_WARM", "KFKIT_LOCAL_WARM_LOG", "KFKIT_LOCAL_FORK", "KFKIT_LOCAL_KEEP"})


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


def _wait_readable(fds: list[int], timeout: float | None = None) -> list[int]:
    """The fds that have something to read (or their end), waiting until one does (or `timeout` s)."""
    import select

    if not hasattr(select, "poll"):
        return select.select(fds, [], [], timeout)[0]
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)]


def _note(function: str, how: str) -> None:
    path = os.environ.get("KFKIT_LOCAL_WARM_LOG")
    if path:
        with contextlib.suppress(OSError), open(path, "a") as log:
            log.write(f"{function}: {how}\n")


class WarmProcess:
    """One step's interpreter, started ahead with its imports; used once or discarded."""

    def __init__(self, modules: tuple[str, ...], environ: list[tuple[str, str]], zygote: Zygote | None = None):
        self.modules = modules
        self.environ = environ
        self.cwd = os.getcwd()
        self.status: bool | None = None  # whether its imports went well, once it said
        self.said = ""  # what it said: ready, failed (its imports), threads (its zygote could not fork)
        self._lock = threading.Lock()
        self.zygote = zygote
        if zygote is not None:
            self._request, self.control, self.process = zygote.fork(modules)
            self._start_reading()
            return
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
        self._start_reading()

    def _start_reading(self) -> None:
        # its output is read from the start, so that an import that prints more than a pipe holds
        # never waits on the step's turn; the step's turn prints it all, as it comes
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name="kfkit-warm-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, ""):
            self.lines.put(line)
        self.lines.put(None)
        if self.zygote is not None:
            self.process.stdout.close()

    def ready(self) -> bool:
        """Wait for its imports; whether it can take its step."""
        with self._lock:
            if self.status is None:
                line = b""
                while not line.endswith(b"\n") and (chunk := os.read(self.control, 64)):
                    line += chunk
                self.said = line.strip().decode(errors="replace")
                self.status = self.said == "ready"
            return self.status

    def start(self, args: list[str], environ: list[tuple[str, str]]) -> None:
        """The step's executor arguments, and its environment when that differs in VOLATILE names."""
        request = {"args": args}
        now, then = dict(environ), dict(self.environ)
        # a forked step has its zygote's environment, which may be an earlier run's
        changed = {name: now.get(name) for name in VOLATILE if self.zygote or now.get(name) != then.get(name)}
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
            if self.zygote is not None:
                self.process.settle()
                return
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


class Forked:
    """A step process that a zygote forked, as kfp.local sees a subprocess.Popen: its output (stdout
    and stderr together), its exit status (from the process that waits on it in the zygote's
    place: its pid, then its wait status), kill."""

    def __init__(self, output: int, status: int):
        self.stdout = os.fdopen(output, "r")  # text, as Popen(text=True) reads it
        self._status = status
        self._said = b""
        self.pid: int | None = None
        self.returncode: int | None = None

    def _hear(self, block: bool) -> None:
        while self.returncode is None and (block or _wait_readable([self._status], 0)):
            chunk = os.read(self._status, 64)
            self._said += chunk
            said = self._said.split(b"\n")
            if self.pid is None and len(said) > 1:
                self.pid = int(said[0])
            if len(said) > 2:
                self.returncode = os.waitstatus_to_exitcode(int(said[1]))
            elif not chunk:  # it never ran, or its waiter was killed
                self.returncode = -9
            if self.returncode is not None:
                os.close(self._status)

    def poll(self) -> int | None:
        self._hear(block=False)
        return self.returncode

    def wait(self) -> int:
        self._hear(block=True)
        return self.returncode

    def kill(self, how: int = signal.SIGKILL) -> None:
        self._hear(block=False)
        if self.pid is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, how)

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, kind, *exc) -> None:
        # the reader thread closes the output at its end; closing it here would wait on that thread
        if kind is KeyboardInterrupt:
            # as subprocess.Popen leaves a child on Ctrl-C: a moment to end, then the run goes on ending
            if _wait_readable([self._status], 0.25):
                self._hear(block=False)
            return
        self.wait()

    def settle(self) -> None:
        """End it if it was forked and runs on; one not forked yet never will be (its run's end drops it)."""
        self._hear(block=False)
        if self.returncode is not None:
            return
        if self.pid is None:
            os.close(self._status)
            self.returncode = -9
            return
        self.kill()
        self.wait()


KEEP = 600.0


def keep() -> float:
    """How long a zygote waits for the next run once its run ended: KFKIT_LOCAL_KEEP seconds
    (default 600; 0: it ends with its run)."""
    value = os.environ.get("KFKIT_LOCAL_KEEP", "")
    try:
        return max(float(value), 0.0) if value.strip() else KEEP
    except ValueError:
        return KEEP


def _settings() -> list:
    """What a process inherits besides its environment: a zygote kept from a run started under
    another umask, limits, priority, CPUs or cgroup serves no run started under these."""
    import resource

    settings: list = []
    with contextlib.suppress(OSError):
        settings.append(Path("/proc/self/status").read_text().partition("Umask:")[2].split("\n")[0].strip())
    with contextlib.suppress(OSError):
        settings.append(Path("/proc/self/cgroup").read_text())
    for name in sorted(n for n in dir(resource) if n.startswith("RLIMIT_")):
        with contextlib.suppress(OSError, ValueError):
            settings.append([name, *resource.getrlimit(getattr(resource, name))])
    with contextlib.suppress(OSError, AttributeError):
        settings.append(os.getpriority(os.PRIO_PROCESS, 0))
    with contextlib.suppress(OSError, AttributeError):
        settings.append(sorted(os.sched_getaffinity(0)))
    return settings


def _place(modules: tuple[str, ...], environ: list[tuple[str, str]]) -> Path:
    """Where the zygote for these imports, this interpreter, directory and environment listens."""
    import hashlib

    key = json.dumps([sys.executable, os.getcwd(), list(modules), sorted(_stable(environ)), _settings(),
                      hashlib.sha256(BOOT.read_bytes()).hexdigest()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    # a short path: a socket's may not exceed 107 bytes
    return _kept_directory() / f"{digest}.sock"


def _kept_directory() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / f"kfkit-zygotes-{os.getuid()}"


def kept_places() -> list[Path]:
    """Where this user's kept zygotes listen."""
    return sorted(_kept_directory().glob("*.sock"))


def end_kept(place: Path) -> bool:
    """End the zygote kept at `place` (one of kept_places()), if it waits for a run; whether it did."""
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        peer.settimeout(2.0)
        peer.connect(str(place))
        peer.send(b"end")
        return peer.recv(64) == b""  # it ended without a word
    except OSError:
        return False
    finally:
        peer.close()


def _own_directory(directory: Path) -> bool:
    """Whether `directory` (made here if missing) is this user's alone: a run hands its steps'
    pipes to whatever listens there, so another user's directory (or one they may write to) is
    never used; the zygote then ends with its run."""
    import stat

    with contextlib.suppress(OSError):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        found = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077


class Zygote:
    """The process that imports every planned step's modules once, in the steps' order, and forks
    each step's process from itself (kfkit.runs.warm_boot's --zygote) once it has that step's
    imports: a step's process then starts with them done rather than doing them again.

    With `keep` seconds, it outlives the run by that long, waiting for the next run with the same
    imports, interpreter, directory and environment, which then finds them done: a developer's
    next run imports nothing. It serves that run only if nothing it imported has changed since
    (kfkit.runs.warm_boot._Imports); else it ends and a new one starts."""

    def __init__(self, modules: tuple[str, ...], environ: list[tuple[str, str]], keep: float = 0.0):
        self.modules = modules
        self.environ = environ
        self.settled = False  # it imported them all
        self.reused = False
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._shown = 0  # how much of its output the steps' turns printed
        self._private: str | None = None  # its directory, when it ends with the run
        place = _place(modules, environ) if keep > 0 and _own_directory(_kept_directory()) else None
        said = self._join(place) if place is not None else None
        if said == b"ready":
            self.reused = self.kept = True
            self.output = place.with_suffix(".out")
            return
        if said == b"":  # it is alive but serving another run (or still importing): leave it be
            place = None
        if place is None:
            import tempfile

            self._private = tempfile.mkdtemp(prefix="kfkit-zygote-")
            place, keep = Path(self._private) / "zygote.sock", 0.0
        self.kept = keep > 0  # then in a session of its own, out of the terminal's reach
        self.output = place.with_suffix(".out")
        self._start(place, keep)

    def _join(self, place: Path, wait: float = 2.0) -> bytes | None:
        """What the zygote listening at `place` says to this run's hello: "ready" (it takes the
        run), "stale", b"" when it does not answer (busy with another run), None when none listens."""
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            peer.connect(str(place))
        except OSError:
            peer.close()
            return None
        try:
            peer.settimeout(wait)  # one serving another run does not answer
            peer.send(b"hello")
            said = peer.recv(64) or None  # it ended without a word
        except (TimeoutError, socket.timeout):
            said = b""
        except OSError:
            said = b"stale"  # it went while answering: a new one takes its place
        if said == b"ready":
            peer.settimeout(None)
            self.socket = peer
        else:
            peer.close()
        return said

    def _start(self, place: Path, keep: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            place.unlink()  # a zygote that ended, or one that is stale or busy: its run keeps it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            listener.bind(str(place))
            listener.listen(4)
            with open(self.output, "wb") as output:
                # a kept zygote is in a session of its own: the terminal's Ctrl-C ends the run, not it
                self.process = subprocess.Popen(
                    [sys.executable, "-c", BOOT.read_text(), "--zygote", str(listener.fileno()), str(keep),
                     *self.modules],
                    stdin=subprocess.DEVNULL if keep > 0 else None, stdout=output, stderr=subprocess.STDOUT,
                    env=dict(self.environ),
                    pass_fds=(listener.fileno(),), start_new_session=keep > 0)
        finally:
            listener.close()
        if self._join(place, wait=60.0) != b"ready":  # it answers between its first imports
            self.close()
            raise OSError(f"the zygote at {place} did not answer")

    def printed(self) -> str:
        """What its imports printed since the last call (all of it at a run's first forked step)."""
        try:
            with open(self.output, "rb") as output:
                output.seek(self._shown)
                text = output.read()
        except OSError:
            return ""
        self._shown += len(text)
        return text.decode(errors="replace")

    def hear(self) -> None:
        """Read what it said (that it imported everything), once the socket is readable."""
        with contextlib.suppress(BlockingIOError):
            try:
                said = self.socket.recv(64, socket.MSG_DONTWAIT)
            except OSError:
                said = b""
            # its end: nothing more to import either
            self.settled = self.settled or said in (b"settled", b"")

    def fork(self, modules: tuple[str, ...]) -> tuple[int, int, Forked]:
        """A step process with `modules` imported: its request's write end, its control's read end."""
        ends = [os.pipe() for _ in range(4)]  # output, request, control, status
        theirs = [ends[0][1], ends[1][0], ends[2][1], ends[3][1]]
        try:
            with self._lock:
                socket.send_fds(self.socket, [json.dumps({"modules": list(modules)}).encode()], theirs)
        except BaseException:
            for fd in (ends[0][0], ends[1][1], ends[2][0], ends[3][0]):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        return ends[1][1], ends[2][0], Forked(ends[0][0], ends[3][0])

    def close(self) -> None:
        """The run's end: a zygote kept waits for the next run, any other ends. Step processes
        forked already run on (or end, without their request); those it had still to fork never start."""
        with contextlib.suppress(AttributeError, OSError):
            self.socket.close()
        if self._private is not None:
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.kill()
                self.process.wait()
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None


def forkable(function: str, source: str) -> bool:
    """Whether a step is forked from the zygote: kfkit's own components only. A forked step also
    holds every other step's imports and what they did on import (TensorFlow's environment
    variables, exit handlers, warning filters): kfkit's steps are tested to answer the same with
    them, a user's component runs warm in an interpreter of its own."""
    from kfkit.components import COMPONENTS

    return any(function == name for _, name in COMPONENTS.values()) and "kfkit." in source


def forking() -> bool:
    """Whether steps are forked from a zygote (KFKIT_LOCAL_FORK, default on where fork and fd
    passing exist); KFKIT_LOCAL_FORK=0 starts each warm step's interpreter of its own."""
    if os.environ.get("KFKIT_LOCAL_FORK", "").strip() == "0":
        return False
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform.startswith("linux")


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

    def __init__(self, steps: list[Planned], count: int, importing: int | None = None, settled=None,
                 fork: bool | None = None):
        self.settled = settled  # called once, when an import place is free and no warm process can start
        self.pending = list(steps)  # planned steps neither warmed nor run yet
        self.count = count
        self.importing = importing or os.cpu_count() or 1
        self.warm: list[WarmProcess] = []  # started, not yet taken
        self.all: list[WarmProcess] = []
        self.script = script(sys.executable)
        self.zygote: Zygote | None = None
        self.forking = forking() if fork is None else fork
        if self.forking and not os.environ.get("KFKIT_LOCAL_WARM", "").strip():
            # a forked process costs a fork, not an import: every planned step gets one, so the
            # steps of a branch that does not run (tune, explain, the canary) hold no later step's place
            self.count = max(count, len(steps))
        self.changed = threading.Condition()
        self.stopping = False
        self._wake_read, self._wake = os.pipe()
        self.thread = threading.Thread(target=self._schedule, name="kfkit-warm-steps", daemon=True)

    def _done(self, step: Planned) -> None:
        self.pending.remove(step)
        if step.conditional:  # of a branch's twins, one runs: the others are not warmed
            self.pending = [s for s in self.pending if not (s.conditional and s.function == step.function)]

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake, b".")

    def _next(self) -> Planned | None:
        """The next step to warm, when a place is free (under self.changed)."""
        importing = self._importing()
        if self.stopping or not self.pending or len(self.warm) >= self.count or importing >= self.importing:
            return None
        step = self.pending[0]
        self._done(step)
        return step

    def _importing(self) -> int:
        """How many processes import now (the zygote counts once, until it imported everything)."""
        zygote = self.zygote is not None and not self.zygote.settled
        return sum(1 for p in self.warm if p.status is None and p.zygote is None) + zygote

    def _warm(self, step: Planned) -> None:
        try:
            environ = _shell_environment(_step_environment(step.env_vars))
            zygote = (self.zygote if self.zygote is not None and forkable(step.function, step.source)
                      and _stable(environ) == _stable(self.zygote.environ) else None)
            process = WarmProcess(preload(step.function, step.source), environ, zygote)
        except (OSError, subprocess.SubprocessError):
            return
        with self.changed:
            self.all.append(process)
            self.warm.append(process)
            self.changed.notify_all()

    def start(self) -> None:
        """The first step's process now (the run starts with it), the others from a thread."""
        if self.forking and self.pending:
            modules = list(dict.fromkeys(m.partition(":")[0] for s in self.pending for m in preload(s.function, s.source)))
            try:
                self.zygote = Zygote(tuple(modules), _shell_environment(_step_environment(self.pending[0].env_vars)),
                                     keep())
            except (OSError, subprocess.SubprocessError):
                self.zygote = None
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
                importing = self._importing()
            if step is not None:
                self._warm(step)
                continue
            zygote = self.zygote if self.zygote is not None and not self.zygote.settled else None
            if importing < self.importing and zygote is None:  # an import place this cannot use now
                self._settle()
            readable = _wait_readable([self._wake_read] + [p.control for p in watched]
                                      + ([zygote.socket.fileno()] if zygote else []))
            if self._wake_read in readable:
                os.read(self._wake_read, 4096)
            if zygote is not None and zygote.socket.fileno() in readable:
                zygote.hear()
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
        why = ("its zygote runs threads and cannot fork" if process.said == "threads" else
               "its imports failed" if not ready else f"another environment: {', '.join(changed)}"
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
        kept = "; a kept zygote" if process.zygote is not None and process.zygote.reused else ""
        _note(function, f"{'forked' if process.zygote else 'warm'} (waited {waited:.2f}s for its imports{kept})")
        # as run_local_subprocess prints and ends a step's output
        with process.process as popen:
            if process.zygote is not None:  # what the imports it was forked with printed, if not yet
                for line in process.zygote.printed().splitlines(keepends=True):
                    print(line, end="")
            try:
                while (line := process.lines.get()) is not None:
                    print(line, end="")
            except KeyboardInterrupt:
                # a kept zygote's steps are in its session, out of the terminal's reach: the step
                # is interrupted as Ctrl-C interrupts an ordinary one (any other's step had it already)
                if process.zygote is not None and process.zygote.kept:
                    popen.kill(signal.SIGINT)
                raise
            print("\n")
            return popen.wait()

    def close(self) -> None:
        with self.changed:
            self.stopping = True
        self.wake()
        if self.thread.is_alive():
            self.thread.join()
        self._settle()
        if self.zygote is not None:  # first: a step process it had still to fork ends with it
            self.zygote.close()
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
