"""One writer per output: an operating-system lock on a file beside the output.

The lock of ``path`` is the file ``.<name>.sxtdist-lock`` beside ``path`` resolved
through symbolic links (every spelling of one output has one lock), so it protects the
path whatever is put there: an output replaced by renaming keeps its lock. It is held
with ``fcntl.flock``, which the kernel releases when its holder dies: a lock left by a
killed run is free at once, and taking it over is as atomic as taking a fresh one (the
old protocol, read the owner's pid and remove its file, let two processes in at once).

The file holds the owner's host and pid, for the message that refuses a second
writer, and the pid's start time and the host's boot (:func:`_identity`): a pid that a
killed run left in its file may since belong to another process, which is then not taken
for the owner (the lock is stale). It is removed on release; a taker that locked a file
just removed by its holder sees that the path no longer names the file it locked and
tries again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from .errors import InputError, OutputLockedError, SxtdistError, naming, os_error, printable

#: Suffix of the lock file ``.<name>.sxtdist-lock`` beside an output.
LOCK_SUFFIX = ".sxtdist-lock"
#: Seconds between two tries while :func:`write_lock` waits for a lock.
POLL_S = 0.25
#: Seconds a writer tries again, quietly, for a lock held by what may be a probe
#: (:func:`held_by` takes for an instant one that names no live run of this host), and
#: between two tries.
PROBE_S, PROBE_POLL_S = 0.5, 0.02
#: The lock files this process holds (:func:`held_by` does not count them).
_HELD: set[str] = set()

logger = logging.getLogger(__name__)


def lock_path(path: str | os.PathLike[str]) -> str:
    """The lock file of the output ``path``, beside it once resolved: every spelling of one
    output (through a symbolic link, ``..``) has the same lock."""
    path = os.path.realpath(os.fspath(path))
    parent, name = os.path.split(path)
    return os.path.join(parent, f".{name}{LOCK_SUFFIX}")


def _owner(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


#: What a lock file records of its owner (:func:`_identity`): a file holding anything else
#: (a user's, another tool's) is not sxtdist's lock, and is never truncated nor removed.
OWNER_KEYS = frozenset({"host", "pid", "started", "boot"})
#: The most a lock file of sxtdist's holds.
LOCK_MAX_BYTES = 4096


def _is_lock_file(fd: int) -> bool:
    """Whether the open file ``fd`` is a lock file of sxtdist's: a plain file, empty (just
    made, or its owner killed before writing itself) or holding an owner's record (a JSON
    object of :data:`OWNER_KEYS` naming a ``host`` and a ``pid``)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, LOCK_MAX_BYTES + 1)
    except OSError:
        return False
    if not data:
        return True
    try:
        owner = json.loads(data.decode())
    except ValueError:  # UnicodeDecodeError too
        return False
    return (
        len(data) <= LOCK_MAX_BYTES
        and isinstance(owner, dict)
        and set(owner) <= OWNER_KEYS
        and isinstance(owner.get("host"), str)
        and isinstance(owner.get("pid"), int)
    )


class NotALockError(InputError):
    """What is at a lock's name ``lock`` is not sxtdist's lock but ``what`` (a user's file,
    a link, a folder): refused, left alone."""

    def __init__(self, lock: str, what: str) -> None:
        super().__init__(
            lock,
            f"has the name of sxtdist's lock of {printable(lock_owner_path(lock))} but is "
            f"{what}: it is left alone; move or rename it, then run the command again",
        )
        self.lock, self.what = lock, what

    def __reduce__(self):  # raised on a Dask worker, re-raised in the client as it was
        return type(self), (self.lock, self.what)


class NoLocksError(SxtdistError):
    """The file system of ``path``'s folder does not support locks (``flock``: some NFS
    mounts): the message names ``path``, what cannot be done (``doing``), then the lock.
    The environment's failure, not bad input: exit code 1."""

    #: as an :class:`OSError` of the place is (a read-only or full disk)
    exit_code = 1

    def __init__(self, path: str, lock: str, why: str, doing: str = "written") -> None:
        super().__init__(
            f"{printable(path)}: cannot be {doing}: its folder's file system does not support "
            f"locks ({why}; sxtdist's lock {printable(lock)}); use a local or lock-capable "
            "file system"
        )
        self.path, self.lock, self.why, self.doing = path, lock, why, doing

    def __reduce__(self):  # raised on a Dask worker, re-raised in the client as it was
        return type(self), (self.path, self.lock, self.why, self.doing)


def lock_owner_path(lock: str) -> str:
    """The output whose lock is the file ``lock`` (:func:`lock_path`'s inverse)."""
    parent, name = os.path.split(lock)
    return os.path.join(parent, name.removeprefix(".").removesuffix(LOCK_SUFFIX))


def _take(lock: str) -> int | None:
    """Lock ``lock`` (created if absent) without waiting; its descriptor, or None if held.

    Only a lock file of sxtdist's (:func:`_is_lock_file`) is taken: anything else of its
    name (a user's file, a link, a folder) is refused (:class:`InputError`), untouched."""
    while True:
        try:  # not through a link: a lock's truncation would empty what it points to
            fd, created = _open_lock(lock)
        except FileNotFoundError:  # its holder removed it between our two opens
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotALockError(lock, "a symbolic link") from None
            if exc.errno == errno.EISDIR:
                raise NotALockError(lock, "a folder") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            if created:  # no locks here (ENOLCK): the empty file we made is not left behind
                _remove_if_same(lock, fd)
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same and not _is_lock_file(fd):  # read locked: no holder is writing it now
            os.close(fd)
            raise NotALockError(lock, "a file sxtdist did not write")
        if same:
            return fd
        os.close(fd)  # the holder removed it as we locked it: take the new file instead


def _open_lock(lock: str) -> tuple[int, bool]:
    """Open the lock file ``lock`` (not through a link), creating it if absent: its
    descriptor, and whether this call created it (to remove it again when it cannot be
    locked). :class:`FileNotFoundError` when it vanished between the two opens."""
    flags = os.O_RDWR | os.O_NOFOLLOW
    try:
        return os.open(lock, flags | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:  # a link, a folder or a file there: opened as it is
        return os.open(lock, flags), False


def _remove_if_same(lock: str, fd: int) -> None:
    """Remove ``lock`` if it is still the empty file open as ``fd`` (what :func:`_take`
    created), nothing else."""
    try:
        empty = os.fstat(fd).st_size == 0
    except OSError:
        return
    if empty:
        _remove_if_ours(lock, fd)


def _remove_if_ours(lock: str, fd: int) -> None:
    """Remove ``lock`` if it is still the file locked as ``fd``, nothing else."""
    try:
        if os.path.samestat(os.fstat(fd), os.lstat(lock)):
            os.remove(lock)
    except OSError:
        pass


def _read_owner(lock: str) -> dict:
    """The owner written in the lock file ``lock`` (``{}`` when none can be read)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _owner(fd)
    finally:
        os.close(fd)


def _describe(owner: dict) -> str:
    if owner.get("pid") is None or _ended_here(owner):  # a stale record: the holder is not it
        return "another run"
    return f"pid {owner.get('pid')} on {owner.get('host')}"


def _started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, ``/proc/PID/stat``'s 22nd
    field), or None where it cannot be read (no ``/proc``: macOS; no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
        return int(text[text.rindex(b")") + 2 :].split()[19])  # after the command's name
    except (OSError, ValueError, IndexError):
        return None


def _boot() -> str | None:
    """This boot of the host (Linux's ``boot_id``): pids start over at a reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _identity() -> dict:
    """What a lock file records of its owner, this process: enough to tell it from a later
    process given the same pid."""
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    started, boot = _started(os.getpid()), _boot()
    return (
        me
        | ({"started": started} if started is not None else {})
        | ({"boot": boot} if boot else {})
    )


def _ended_here(owner: dict) -> bool:
    """Whether ``owner`` names a run of this host that has ended: its pid gone, or now
    another process's (a start time or a boot other than recorded)."""
    return _of_this_host(owner) and not _alive_here(owner)


def _of_this_host(owner: dict) -> bool:
    """Whether ``owner`` names a pid of this host (another host's run this host cannot
    tell; an owner not written yet names none)."""
    pid = owner.get("pid")
    return owner.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0


def _held_by(lock: str) -> str:
    return _describe(_read_owner(lock))


def _alive_here(owner: dict) -> bool:
    """Whether ``owner`` is a run of this host that is alive (not a killed run, nor one whose
    pid is now another process's, not another host's run, which this host cannot tell,
    nor an owner not written yet)."""
    if not _of_this_host(owner):
        return False
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        pass
    if owner.get("boot") is not None and owner["boot"] != _boot():
        return False  # recorded before a reboot: another process now has this pid
    started = owner.get("started")
    return started is None or _started(pid) in (None, started)  # unrecorded: as before


def _take_probed(lock: str) -> int | None:
    """:func:`_take`; a lock held by what may be a probe (its file names no live run of this
    host: a writer writes its own at once) is tried again for up to :data:`PROBE_S`."""
    deadline = time.monotonic() + PROBE_S
    while (fd := _take(lock)) is None and time.monotonic() < deadline:
        if _alive_here(_read_owner(lock)):
            return None  # a writer, not a probe
        time.sleep(PROBE_POLL_S)
    return fd


def _take_within(path: str, lock: str, wait_s: float) -> int | None:
    """:func:`_take_probed`, tried again every :data:`POLL_S` for up to ``wait_s`` seconds
    (one log line when it has to wait)."""
    deadline = time.monotonic() + wait_s
    fd = _take_probed(lock)
    if fd is None and wait_s > 0:
        logger.info(
            "%s is being written by %s: waiting up to %g s for it to finish",
            path,
            _held_by(lock),
            wait_s,
        )
        while fd is None and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
            fd = _take(lock)
    return fd


@contextmanager
def write_lock(path: str | os.PathLike[str], wait_s: float = 0.0) -> Iterator[str]:
    """Hold the lock of the output ``path`` while writing it; refuse if another run holds it.

    Raises :class:`~sxtdist.errors.OutputLockedError` (one line naming the holder)
    when the lock is still held after ``wait_s`` seconds (default: at once). Yields
    the lock file's path. The parent directory must exist.

    An I/O error of zarrs (Rust) raised while the output is written, a ``RuntimeError``
    such as ``No space left on device (os error 28)``, leaves as the :class:`OSError` it
    is (``errno`` ``ENOSPC``, naming ``path``), and so does an :class:`OSError` that
    names no file (a write to a full disk): the message says which output failed.
    """
    path = os.fspath(path)
    lock = lock_path(path)
    try:
        fd = _take_within(path, lock, wait_s)
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
            raise NoLocksError(path, lock, exc.strerror or "") from None
        raise naming(exc, path) from exc  # the output, not the hidden lock file beside it
    if fd is None:
        waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
        raise OutputLockedError(
            path,
            f"is being written by {_held_by(lock)} (lock {lock}){waited}; wait for it to finish",
        )
    _HELD.add(lock)
    try:
        me = _identity()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        try:
            yield lock
        except (RuntimeError, OSError) as exc:  # a failed write names the output
            failed = os_error(exc, path)
            if failed is None or failed is exc:
                raise
            raise failed from exc
    finally:
        _HELD.discard(lock)
        # while still locked: a waiting taker then sees another file; only the file held (a
        # file put at its name meanwhile is someone's)
        _remove_if_ours(lock, fd)
        os.close(fd)


def _marker(path: str | os.PathLike[str], activity: str) -> str:
    """The path whose lock is that of ``activity`` on ``path`` (:func:`activity_lock`)."""
    # resolved first: the marker does not exist, so lock_path could not follow a link to
    # ``path`` itself, and two spellings of one acquisition would take two locks
    return f"{os.path.realpath(os.fspath(path))}.{activity}"


@contextmanager
def activity_lock(path: str | os.PathLike[str], activity: str) -> Iterator[None]:
    """Hold, for the whole block, the lock of one ``activity`` on ``path`` (``"aligned"``:
    an ``align`` of an acquisition, from its first read to its store): a second run of it
    is refused at once (:class:`~sxtdist.errors.OutputLockedError`, "is being aligned by
    pid N on HOST"); a user's file, folder or link at the lock's name (``.NAME.aligned.sxtdist-lock``)
    is refused naming ``path``, then that file (:class:`~sxtdist.errors.InputError`), and so
    is a file system without locks (:class:`NoLocksError`). Writers of ``path`` itself take
    its own lock, not this one."""
    path = os.fspath(path)
    marker = _marker(path, activity)
    with ExitStack() as stack:
        try:
            stack.enter_context(write_lock(marker))
        except OutputLockedError:
            holder = _held_by(lock_path(marker))
            raise OutputLockedError(
                path, f"is being {activity} by {holder}; wait for it to finish"
            ) from None
        except NoLocksError as exc:  # the acquisition, not the marker; it is read, not written
            raise NoLocksError(path, exc.lock, exc.why, activity) from None
        except NotALockError as exc:  # the place the user named first, then the file at fault
            raise InputError(
                path,
                f"cannot be {activity}: {printable(exc.lock)}, the lock sxtdist holds while it "
                f"is {activity}, is {exc.what}: it is left alone; move or rename it, then run "
                "the command again",
            ) from None
        except OSError as exc:
            raise naming(exc, path) from exc  # the place the user named, not the marker
        try:
            yield
        except (RuntimeError, OSError) as exc:  # a failed store names ``path``, not the marker
            failed = os_error(exc, path)
            if failed is None or failed is exc:
                raise
            raise failed from exc


def held_by(path: str | os.PathLike[str]) -> str | None:
    """Who holds the lock of the output ``path`` now (``"pid N on HOST"``), or None when
    nobody does, this process does, or it cannot be told (a read-only place).

    A lock file naming a live run of this host is told by that run's pid, the lock left
    alone: taking it, even for an instant, refused a writer starting then. Any other (a
    killed run's, removed when free; another host's) is taken for an instant, and a
    writer finding its lock so held waits such an instant out (:data:`PROBE_S`).
    """
    lock = lock_path(path)
    if lock in _HELD or not os.path.exists(lock):  # this process writes it (an import)
        return None
    owner = _read_owner(lock)
    if _alive_here(owner):  # a writer of this host, running
        return _describe(owner)
    try:
        fd = _take(lock)
    except (OSError, InputError):  # InputError: not sxtdist's lock, left alone
        return None
    if fd is None:
        return _held_by(lock)
    _remove_if_ours(lock, fd)  # as a writer releases it: while still locked
    os.close(fd)
    return None


def activity_held_by(path: str | os.PathLike[str], activity: str) -> str | None:
    """Who holds the lock of ``activity`` on ``path`` now (:func:`activity_lock`: an
    ``align`` of an acquisition), as :func:`held_by` says it; None when nobody does."""
    return held_by(_marker(path, activity))


def stale_owner(path: str | os.PathLike[str]) -> str | None:
    """``"pid N on HOST"`` when the lock file of the output ``path`` names a run of this
    host that has ended (killed; its pid maybe another process's now): a stale lock, no
    obstacle to the next writer. None otherwise (no lock file, a live owner, another host's)."""
    owner = _read_owner(lock_path(path))
    return f"pid {owner['pid']} on {owner['host']}" if _ended_here(owner) else None
