"""The start of a warm step process (kfkit.runs.warm): run as `python -c <this file's source>`.

    python -c SOURCE REQUEST_FD CONTROL_FD [MODULE | MODULE:FUNCTION ...]

It imports the modules its step will import, says on CONTROL_FD whether that went well ("ready"
or "failed"), then waits on REQUEST_FD for the step's executor arguments (JSON: "args", and
"environ": the variables of kfkit.runs.warm.VOLATILE that changed since the start). With them it
becomes the step: `python -m kfp.dsl.executor_main ARGS...`, as kfp.local's command would start
it, in a process of its own that nothing else ever ran in. An empty request (the run ended
without this step, or the step runs the ordinary way) ends the process at once.

    python -c SOURCE --zygote LISTEN_FD KEEP MODULE...

runs the zygote instead (_zygote): it imports the modules once and forks each step's process.

Nothing here writes to stdout or stderr: those are the step's own, read by kfkit.runs.warm.
"""

import os
import sys


def _preload(entries: list[str]) -> bool:
    import importlib
    import logging

    try:
        for entry in entries:
            name, _, function = entry.partition(":")
            module = importlib.import_module(name)
            if function:
                getattr(module, function)()
    except BaseException:  # noqa: BLE001 - the step then runs the ordinary way and meets its own error
        return False
    # kfp's executor configures the root logger first thing (basicConfig): an import that did it
    # here would change every log line of the step
    return not logging.root.handlers and logging.root.level == logging.WARNING


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _step(request_fd: int, ready: bool) -> None:
    """Become the step the request on `request_fd` names; end at once on an empty request."""
    request = _read_all(request_fd)
    if not ready or not request:
        os._exit(0)

    import builtins
    import json
    import runpy
    import types

    request = json.loads(request)
    args = request["args"]
    for name, value in request.get("environ", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    module = "kfp.dsl.executor_main"
    sys.argv = ["-m", *args]
    sys.orig_argv = [sys.executable, "-m", module, *args]
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __annotations__={}, __loader__=None)
    sys.modules["__main__"] = main
    try:
        # what `python -m` itself calls
        runpy._run_module_as_main(module)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as `python -m` reports it, from runpy's frame on
        # the traceback the exception carries is the one printed
        exc.__traceback__ = exc.__traceback__.tb_next
        sys.excepthook(type(exc), exc, exc.__traceback__)
        sys.exit(1)


def _boot() -> None:
    request_fd, control_fd = int(sys.argv[1]), int(sys.argv[2])
    sys.path[0] = os.getcwd()  # what `python -m` puts first; `-c` puts ""
    ready = _preload(sys.argv[3:])
    os.write(control_fd, b"ready\n" if ready else b"failed\n")
    os.close(control_fd)
    _step(request_fd, ready)


def _quietly(call, *args) -> None:
    try:
        call(*args)
    except OSError:
        pass


def _reseed() -> None:
    """numpy's global random state from fresh entropy, as a new interpreter seeds it: forked steps
    would otherwise all draw the zygote's numbers (Python's own random module reseeds itself at fork)."""
    # numpy.random made its state on import: one not imported yet seeds itself in the step
    random = sys.modules.get("numpy.random")
    if random is not None:
        random.seed()


class _BecomeStep(BaseException):
    """Raised in a forked step's process: it leaves the zygote's frames (whose sockets and fds it
    closed) before it runs the step, so nothing of theirs is freed, or closed, while the step runs."""


def _fork_step(wanted: list[str], fds: list[int], sockets: list, closing: list[int], interrupt) -> None:
    """In the zygote: fork a waiter, which forks the step's process and reports how it ended.

    fds: the step's output (its stdout and stderr), its request, its control and its status (the
    waiter writes the step's pid, then its wait status); sockets and closing: the zygote's sockets
    and the fds no step may keep; interrupt: SIGINT's handler as the zygote found it.
    """
    import signal

    out_fd, request_fd, control_fd, status_fd = fds
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        # a fork keeps only this thread: a lock another one holds (logging's, an import's) would
        # stay held in the step for good, so the step runs the ordinary way
        os.write(control_fd, b"threads\n")
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if os.fork():
        return
    # the waiter
    step = os.fork()
    if step == 0:
        # the step's process: nothing of the zygote's but its imports
        signal.signal(signal.SIGINT, interrupt)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        for sock in sockets:
            sock.close()  # through the object: closing its bare fd would let it close a reused one later
        for fd in closing + [out_fd, status_fd]:
            _quietly(os.close, fd)
        ready = _preload(wanted)
        _reseed()
        os.write(control_fd, b"ready\n" if ready else b"failed\n")
        os.close(control_fd)
        raise _BecomeStep(request_fd, ready)
    for sock in sockets:
        sock.detach()  # the waiter ends with os._exit: its copies need no closing
    for fd in closing + [out_fd, request_fd, control_fd]:
        _quietly(os.close, fd)
    # the zygote's output pipe: the run reads it to its end once the zygote ends, which a waiter
    # holding it open (until its step ends) would put off
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        os.write(status_fd, f"{step}\n".encode())
        status = _await(step, status_fd)
        os.write(status_fd, f"{status}\n".encode())
    finally:
        os._exit(0)


def _await(step: int, status_fd: int) -> int:
    """The step's wait status. Should the run go first (killed, its terminal closed: its end of
    the status pipe closes), the step is terminated: a kept zygote's steps are out of reach of
    the signals that ended the run."""
    import select
    import signal

    try:
        pidfd = os.pidfd_open(step)
    except (AttributeError, OSError):
        return os.waitpid(step, 0)[1]
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(status_fd, 0)  # its error (no reader left) is always reported
    while not any(fd == pidfd for fd, _ in poller.poll()):
        _quietly(os.kill, step, signal.SIGTERM)
        poller.unregister(status_fd)
    return os.waitpid(step, 0)[1]


def _stamps(paths) -> dict:
    stamps = {}
    for path in paths:
        try:
            stat = os.stat(path)
            stamps[path] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            stamps[path] = None
    return stamps


def _origin(name: str) -> str:
    """Where a new interpreter's import of top-level module `name` would find it now."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        try:
            spec = find(name, None) if find is not None else None
        except Exception:  # noqa: BLE001 - a finder that fails here: the import would not have used it
            spec = None
        if spec is not None:
            return str(spec.origin)
    return ""


class _Imports:
    """What the zygote imported, for a later run's hello: each module's file as it was when
    imported, and where each top-level module was found (a module added earlier on the path would
    shadow it). A file changed after the zygote started may have been read before or after the
    change: it is never served again."""

    def __init__(self):
        import time

        self.started = time.time_ns()
        self.stamps: dict = {}
        self.found: dict[str, str] = {}
        self.changed = False
        self.note()

    def note(self) -> None:
        """Take in the modules imported since the last call."""
        import importlib

        importlib.invalidate_caches()
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and path not in self.stamps:
                stamp = _stamps([path])[path]
                self.stamps[path] = stamp
                # the file clock is coarser than time_ns: a second's margin, as a change then counts too
                self.changed = self.changed or (stamp is not None and stamp[0] >= self.started - 10**9)
            if "." not in name and name not in self.found and isinstance(path, str):
                self.found[name] = _origin(name)

    def stale(self) -> bool:
        import importlib

        importlib.invalidate_caches()
        return (self.changed or _stamps(list(self.stamps)) != self.stamps
                or any(_origin(name) != origin for name, origin in self.found.items()))


def _zygote() -> None:
    """python -c SOURCE --zygote LISTEN_FD KEEP MODULE...: import the MODULEs in order (a
    MODULE:FUNCTION entry only imports MODULE) and serve the runs that connect to LISTEN_FD, one
    at a time. A run says hello ("end" ends it); the zygote answers "ready", or "stale" (and ends)
    when what it imported changed since (_Imports). Between imports it takes the run's requests
    (JSON: the "modules" its step imports; four fds: see _fork_step) and forks a step process for
    each once it has imported the modules named of its own; it says "settled" once it imported them
    all. When the run goes, the steps it did not take are not forked, and the zygote waits KEEP
    seconds for the next run (0: it ends with its run)."""
    import importlib
    import json
    import select
    import signal
    import socket

    interrupt = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's end (or its caller) ends it
    listener = socket.socket(fileno=int(sys.argv[2]))
    keep = float(sys.argv[3])
    place = listener.getsockname()
    bound = _stamps([place]).get(place)
    sys.path[0] = os.getcwd()
    modules = [entry.partition(":")[0] for entry in sys.argv[4:]]
    imports = _Imports()
    done: set[str] = set()
    queued: list[tuple[list[str], list[int]]] = []
    index = 0
    sock = None  # the run it serves

    def end() -> None:
        if _stamps([place]).get(place) == bound:  # not a newer zygote's, bound there since
            _quietly(os.unlink, place)
            _quietly(os.unlink, os.path.splitext(place)[0] + ".out")
        os._exit(0)

    def reap() -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:  # the waiters that ended
                pass
        except ChildProcessError:
            pass

    while True:
        reap()
        importing = index < len(modules)
        if sock is None:
            if importing and not select.select([listener], [], [], 0)[0]:
                pass  # importing while no run is there
            else:
                if not select.select([listener], [], [], None if importing else keep if keep > 0 else 60)[0]:
                    end()
                sock, _ = listener.accept()
                if sock.recv(64) == b"end":
                    end()
                if imports.stale():
                    _quietly(sock.send, b"stale")
                    end()
                _quietly(sock.send, b"ready")
                if not importing:
                    _quietly(sock.send, b"settled")
                continue
        else:
            # the run's requests, and its end, before anything queued is forked
            while select.select([sock], [], [], 0 if importing or queued else None)[0]:
                message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
                if message:
                    queued.append((json.loads(message)["modules"], fds))
                    continue
                for _, others in queued:  # the run ended: the steps it did not take are not forked
                    for fd in others:
                        _quietly(os.close, fd)
                queued.clear()
                sock.close()
                sock = None
                if keep <= 0:
                    end()
                break
            if sock is None:
                continue
            for wanted, fds in list(queued):
                if all(entry.partition(":")[0] in done or entry.partition(":")[0] not in modules for entry in wanted):
                    queued.remove((wanted, fds))
                    _fork_step(wanted, fds, [listener, sock], [fd for _, others in queued for fd in others],
                               interrupt)
                    for fd in fds:
                        os.close(fd)
            if not importing:
                continue
        try:
            importlib.import_module(modules[index])
        except BaseException:  # noqa: BLE001 - a step that needs it imports it itself, and fails as it would
            pass
        done.add(modules[index])
        index += 1
        imports.note()
        if index == len(modules) and sock is not None:
            _quietly(sock.send, b"settled")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        become = None
        try:
            _zygote()
        except _BecomeStep as forked:
            become = forked.args
        if become is not None:  # a forked step's process, out of the zygote's frames
            _step(*become)
            sys.exit(0)  # as the interpreter ends after `python -m`: exit handlers, then status 0
    else:
        _boot()
