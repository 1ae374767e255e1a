"""Write outputs beside their final place and rename, so a failed step leaves nothing half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces `final`, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file beside `final`; it is renamed onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
    except BaseException:
        os.unlink(tmp)
        raise
    os.replace(tmp, final)


def commit_dirs(pairs: list[tuple[Path, Path]]) -> None:
    """Move several finished temporary directories into place, only once all of them exist."""
    for tmp, final in pairs:
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
