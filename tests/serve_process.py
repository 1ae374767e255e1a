"""`kfkit serve` as its own process, for tests of what only a real process shows (signals, shutdown)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


@contextlib.contextmanager
def kfkit_serve(model_dir: Path, local_root: Path, kserve_explainer: str = "", args: tuple[str, ...] = ()):
    """(process, port) of a `kfkit serve` listening on 127.0.0.1, its output in local_root/serve.log;
    killed on the way out if it is still running. kserve_explainer: an InferenceService name, to start it
    with the arguments KServe appends to a custom explainer's (explainer_custom.go). args: more of
    `serve`'s arguments."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = Path(local_root) / "serve.log"
    log = open(log_path, "w")
    port_args = (["--model_name", kserve_explainer, "--predictor_host", f"{kserve_explainer}-predictor.default",
                  "--http_port", str(port)] if kserve_explainer else ["--port", str(port)])
    process = subprocess.Popen([sys.executable, "-m", "kfkit.cli", "serve", "--model-dir", str(model_dir),
                                "--local-root", str(local_root), *port_args, *args],
                               stdout=log, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the server's log for its start, bounded
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
