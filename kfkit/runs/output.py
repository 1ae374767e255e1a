"""Quiet local runs: kfp.local's output goes to a log file, the terminal gets a line per step.

kfp.local prints every step's executor input, output and logs (about 80% of a run's lines are its
JSON dumps). During a run the process's stdout and stderr (the file descriptors, so the steps'
subprocesses too) go to <run dir>/logs/run.log; a watcher reads it as it grows and prints one line
per step to the real terminal. Afterwards the log is split into one file per step, without
colour codes, and a failed step's own error message is found in its log.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) - ")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit)):\s?(.*)$")
KFKIT_ERRORS = {"KfkitError", "ConfigError", "QueryError", "IngestError", "ValidationError", "RequestError"}


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


class Progress:
    """Writes one line per step to the terminal (no colour codes unless it is a terminal)."""

    def __init__(self, stream, color: bool | None = None):
        self.stream = stream
        self.color = stream.isatty() if color is None else color
        self.started: dict[str, float] = {}
        self.results: dict[str, tuple[str, float]] = {}

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    @staticmethod
    def _clock(text: str) -> float:
        """kfp.local's own time stamp of a line (seconds in the day), else now."""
        match = STAMP.match(text)
        if not match:
            return time.time() % 86400
        return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))

    def feed(self, raw: str) -> None:
        text = strip_ansi(raw)
        match = STARTED.search(text)
        if match:
            self.started[match.group(1)] = self._clock(text)
            return
        match = FINISHED.search(text)
        if match:
            name, status = match.group(1), match.group(2)
            seconds = (self._clock(text) - self.started.get(name, self._clock(text))) % 86400
            self.results[name] = (status, seconds)
            mark = self._paint("ok", "32") if status == "SUCCESS" else self._paint(status.lower(), "31")
            self.line(f"  {name:<32} {seconds:6.1f}s  {mark}")


@contextmanager
def quiet_output(log_path: Path, progress: Progress):
    """Send fds 1 and 2 to log_path while the block runs; feed the log to `progress` as it grows."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    stop = threading.Event()

    def tail():
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            pending = ""
            while True:
                chunk = handle.read()
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        progress.feed(line)
                elif stop.is_set():
                    if pending:
                        progress.feed(pending)
                    return
                else:
                    time.sleep(0.1)  # polling a growing file

    # progress written to this process's stdout would land in the log: give it the terminal's fd
    original_stream = progress.stream
    terminal = None
    if original_stream is sys.__stdout__:
        terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
        progress.stream = terminal
    # kfp.local prints through Python (its log handler takes sys.stdout when a run starts) and the
    # steps' processes write to the inherited descriptors: redirect both
    python_streams = sys.stdout, sys.stderr
    log_stream = os.fdopen(os.dup(log_fd), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = sys.stderr = log_stream
    watcher = threading.Thread(target=tail, daemon=True, name="kfkit-progress")
    watcher.start()
    try:
        yield
    finally:
        log_stream.flush()
        sys.stdout, sys.stderr = python_streams
        log_stream.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        stop.set()
        watcher.join(10)
        progress.stream = original_stream
        if terminal is not None:
            terminal.close()


def split_logs(run_log: Path, logs_dir: Path) -> dict[str, Path]:
    """One log file per step (<logs dir>/<step>.log), colour codes removed; returns step -> path."""
    if not run_log.exists():
        return {}
    paths: dict[str, Path] = {}
    current = None
    handles = {}
    try:
        with open(run_log, encoding="utf-8", errors="replace") as source:
            for raw in source:
                line = strip_ansi(raw)
                match = STARTED.search(line)
                if match:
                    current = match.group(1)
                    if current not in handles:
                        paths[current] = logs_dir / f"{current}.log"
                        handles[current] = open(paths[current], "w", encoding="utf-8")
                if current is not None:
                    handles[current].write(line)
                if FINISHED.search(line):
                    current = None
    finally:
        for handle in handles.values():
            handle.close()
    return paths


@dataclass
class StepFailure:
    step: str
    kind: str
    message: str
    traceback: str
    log: Path | None

    @property
    def is_kfkit_error(self) -> bool:
        return self.kind in KFKIT_ERRORS

    def render(self) -> list[str]:
        lines = [f"Step {self.step!r} failed: {self.message}" if self.message else f"Step {self.step!r} failed"]
        if not self.is_kfkit_error and self.traceback:
            lines += ["", self.traceback]
        if self.log:
            lines.append(f"Full log of the step: {self.log}")
        return lines


def find_failure(step_logs: dict[str, Path], progress: Progress) -> StepFailure | None:
    """The failed step and its own error message (the last exception line of its log)."""
    failed = [name for name, (status, _) in progress.results.items() if status != "SUCCESS"]
    if not failed:
        failed = [name for name, path in step_logs.items() if "FAILURE" in path.read_text(errors="replace")]
    if not failed:
        return None
    step = failed[-1]
    log = step_logs.get(step)
    text = log.read_text(errors="replace") if log else ""
    lines = text.splitlines()
    kind, message, where = "", "", None
    for index in range(len(lines) - 1, -1, -1):
        match = ERROR_LINE.match(lines[index])
        if match:
            kind, message, where = match.group(1), match.group(2).strip(), index
            break
    if where is not None:  # a message of several lines continues up to kfp.local's next stamped line
        more = []
        for line in lines[where + 1:]:
            if STAMP.match(line) or not line.strip():
                break
            more.append(line.strip())
        message = "\n".join([message, *more]) if more else message
    if where is not None:
        start = where
        while start > 0 and "Traceback (most recent call last)" not in lines[start]:
            start -= 1
        traceback = "\n".join(line[4:] if line.startswith("    ") else line for line in lines[start:where + 1])
    return StepFailure(step, kind, message, traceback, log)
