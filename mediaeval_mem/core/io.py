"""Crash-safe file writes, advisory locks, and one line for a failed write.

Writes go to a temporary file beside the target, are fsynced, then renamed over it: a reader sees
either the old file or the new one, never a half-written one, even after kill -9 (os.replace is
atomic on POSIX within one filesystem). A write that fails (a full disk, a quota, an I/O error)
leaves the target as it was, removes the temporary file and raises a MemError naming the path and
the free space, so the user sees one line and what finished before stays finished.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mediaeval_mem.core.errors import DiskFullError, MemError

TMP_MARK = ".tmp-"
NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as df -h counts)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_bytes(path: Path) -> int | None:
    """Free space on the filesystem that holds `path` (its nearest existing ancestor); None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def write_error(exc: OSError, path: Path, needed: int | None = None, for_what: str = "") -> MemError:
    """The one-line error for a failed write to `path`: what happened, the free space, what to do.

    `needed` (bytes) is what the interrupted work still had to write (`for_what` says what that is),
    where the caller knows it.
    """
    free = free_bytes(path)
    room = f"{human_bytes(free)} free" if free is not None else "free space unknown"
    if needed:
        room += f", about {human_bytes(needed)} needed" + (f" for {for_what}" if for_what else "")
    if exc.errno in NO_SPACE:
        return DiskFullError(
            f"no space left on the disk holding {path} ({room}): free some space (or point MEM_RUNS_DIR "
            f"at a larger disk) and run the same command again; everything finished so far is kept"
        )
    reason = exc.strerror or str(exc)
    return MemError(f"cannot write {path}: {reason} ({room}); everything finished so far is kept")


def os_error_chain(exc: BaseException) -> OSError | None:
    """The first OSError in `exc`'s chain of causes (libraries often wrap the one that matters)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)  # first, so that the free space reported is the real one
        raise write_error(e, path, len(data)) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy file of `array`, in memory (to checksum exactly what is written)."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, data)


def atomic_save(path: Path, save: Callable[[Path], None], needed: int | None = None) -> None:
    """Let `save(tmp_path)` write a file (torch.save, save_pretrained, ...), then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        if tmp.is_file():  # on disk before the rename: a power loss leaves the old file or the new, whole
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, path, needed) from None
    except RuntimeError as e:  # torch.save reports a failed write as a RuntimeError wrapping the OS's reason
        cause = os_error_chain(e)
        if cause is None and "write" not in str(e).lower():
            raise
        raise write_error(cause or OSError(errno.EIO, str(e)), path, needed) from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None, wait: bool = True):
    """Hold an exclusive advisory lock on `path` (created if absent) for the block; yields True.

    Blocks until the lock is free, calling `on_wait()` first if it is held elsewhere; with `wait` False
    it does not, and yields False (the block runs without the lock). The OS releases the lock when its
    holder exits, however it exits (kill -9 included), so a lock is never stale.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
    except OSError as e:
        raise write_error(e, path) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait is not None:
                on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        yield True


@contextmanager
def keyed_folder(folder: Path, key: dict, doing: str):
    """A cache folder of per-video files (transcripts, generated captions): made with its key.json, then held under
    its .lock for the block (saying on stderr what it waits for, e.g. doing="transcribing")."""
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "key.json", key)

    def waiting():
        print(f"waiting: another process is {doing} into {folder}", file=sys.stderr, flush=True)

    with file_lock(folder / ".lock", on_wait=waiting):
        yield
