"""The start of a warm step process (kfkit.runs.warm): run as `python -c <this file's source>`.

    python -c SOURCE REQUEST_FD CONTROL_FD [MODULE | MODULE:FUNCTION ...]

It imports the modules its step will import, says on CONTROL_FD whether that went well ("ready"
or "failed"), then waits on REQUEST_FD for the step's executor arguments (JSON: "args", and
"environ": the variables of kfkit.runs.warm.VOLATILE that changed since the start). With them it
becomes the step: `python -m kfp.dsl.executor_main ARGS...`, as kfp.local's command would start
it, in a process of its own that nothing else ever ran in. An empty request (the run ended
without this step, or the step runs the ordinary way) ends the process at once.

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


def _boot() -> None:
    request_fd, control_fd = int(sys.argv[1]), int(sys.argv[2])
    sys.path[0] = os.getcwd()  # what `python -m` puts first; `-c` puts ""
    ready = _preload(sys.argv[3:])
    os.write(control_fd, b"ready\n" if ready else b"failed\n")
    os.close(control_fd)
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


if __name__ == "__main__":
    _boot()
