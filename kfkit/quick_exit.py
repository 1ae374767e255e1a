"""Let a step's process end as soon as its outputs are written.

A Python process that imported TensorFlow or MLflow spends about a second in interpreter teardown
after its work is done (module finalisation, library exit handlers); in the local loop that is
paid by every such step (benchmarks/pipeline.py). `after_success()` is called by a component at
the end of its work: when the process is KFP's executor (`python -m kfp.dsl.executor_main`) and it
then finishes without an uncaught exception, the process flushes its streams and log handlers and
exits with status 0 at once. A failure keeps the normal exit (and its non-zero status), and
anything else (tests calling a component's `python_func`, notebooks) is left alone.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys

_armed = False


def _is_kfp_executor() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "kfp.dsl.executor_main"


def _output_file() -> str | None:
    """The executor output file named in the executor's --executor_input argument."""
    args = sys.argv[1:]
    for index, arg in enumerate(args):
        value = None
        if arg == "--executor_input" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--executor_input="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return json.loads(value)["outputs"]["outputFile"]
            except (ValueError, KeyError, TypeError):
                return None
    return None


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def after_success() -> bool:
    """Arm the quick exit for this executor process; returns whether it was armed."""
    global _armed
    if _armed or not _is_kfp_executor():
        return _armed
    output_file = _output_file()
    if output_file is None:
        return False
    before = _stamp(output_file)
    failures: list[BaseException] = []
    previous_hook = sys.excepthook

    def record_failure(kind, value, traceback):
        failures.append(value)
        previous_hook(kind, value, traceback)

    sys.excepthook = record_failure

    def exit_now() -> None:
        # KFP writes the executor output only when the step succeeded: without it (an exception
        # after the component returned, a sys.exit) the exit keeps its own status
        if failures:
            return
        after = _stamp(output_file)
        if after is None or after == before:
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                return
        os._exit(0)

    # exit handlers run last-registered first: this one runs before the libraries' own
    atexit.register(exit_now)
    _armed = True
    return True
