"""Run the service's locks in a child process, on the POSIX code path or on the Windows one.

    python -m tests.service.lock_child MODE ACTION PATH

MODE ``posix``: as the service runs on Linux (portalocker over ``fcntl.flock``).

MODE ``windows``: portalocker's Windows code path (``MsvcrtLocker`` over ``msvcrt.locking``)
on this Linux machine. ``fcntl`` is made unimportable, as on Windows, and ``msvcrt`` is a
stand-in whose ``locking(fd, mode, nbytes)`` has the documented interface — a byte range from
the current position, ``LK_NBLCK`` failing at once with ``OSError`` errno 13 (EACCES),
``LK_UNLCK`` releasing — carried out with POSIX record locks (``lockf``) on that range, so two
processes exclude each other for real. What this cannot show: Windows' mandatory locking (other
processes cannot read locked bytes), the real ``msvcrt`` module, NTFS. Nothing here has run on
Windows itself.

ACTION ``hold``: take the intake cycle lock (``Ledger.exclusive``) or, with a ``.xlsx`` PATH,
the workbook writer lock; print ``locked`` and wait until stdin closes.
ACTION ``try``: take the same lock without waiting; print ``got`` or ``busy: <message>``.
ACTION ``imports``: with ``fcntl`` unimportable in either mode, import every module of
service/, connectors/ and schedules/; print ``ok``.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import pkgutil
import sys
import types
from pathlib import Path


def emulate_windows_locking() -> None:
    import fcntl as real_fcntl  # kept for the stand-in only, before fcntl is hidden

    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_UNLCK, msvcrt.LK_LOCK, msvcrt.LK_NBLCK, msvcrt.LK_RLCK, msvcrt.LK_NBRLCK = range(5)  # type: ignore[attr-defined]

    def locking(fd: int, mode: int, nbytes: int) -> None:
        start = os.lseek(fd, 0, os.SEEK_CUR)
        if mode == msvcrt.LK_UNLCK:  # type: ignore[attr-defined]
            real_fcntl.lockf(fd, real_fcntl.LOCK_UN, nbytes, start, os.SEEK_SET)
            return
        try:
            real_fcntl.lockf(
                fd, real_fcntl.LOCK_EX | real_fcntl.LOCK_NB, nbytes, start, os.SEEK_SET
            )
        except OSError:
            raise OSError(errno.EACCES, "Permission denied") from None

    msvcrt.locking = locking  # type: ignore[attr-defined]
    # Only portalocker may see "nt" and this msvcrt: the standard library decides "am I on
    # Windows?" the same way (subprocess imports msvcrt, shutil looks for nt), so its modules
    # are imported first as themselves, and both are put back once portalocker has its own.
    for name in (
        "argparse",
        "atexit",
        "inspect",
        "json",
        "random",
        "shutil",
        "subprocess",
        "tempfile",
        "uuid",
        "weakref",
        "zipfile",
        "importlib.metadata",
    ):
        __import__(name)
    # Its version lookup reads installed metadata through pathlib, which under "nt" would
    # want WindowsPath: load that one module first, as itself.
    package = importlib.util.find_spec("portalocker")
    assert package is not None and package.submodule_search_locations
    about_path = Path(package.submodule_search_locations[0]) / "__about__.py"
    about_spec = importlib.util.spec_from_file_location("portalocker.__about__", about_path)
    assert about_spec is not None and about_spec.loader is not None
    about = importlib.util.module_from_spec(about_spec)
    sys.modules["portalocker.__about__"] = about
    about_spec.loader.exec_module(about)
    saved = os.name
    sys.modules["msvcrt"] = msvcrt
    os.name = "nt"  # portalocker picks its implementation when imported
    try:
        import portalocker
        from portalocker import portalocker as implementation
    finally:
        os.name = saved
        del sys.modules["msvcrt"]  # portalocker keeps its reference
    assert implementation.LOCKER is implementation.MsvcrtLocker, implementation.LOCKER
    assert portalocker.LockFlags.EXCLUSIVE == 0x1  # the Windows flag values
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # as on Windows: no fcntl


def import_everything() -> None:
    root = Path(__file__).resolve().parents[2]
    for package in ("service", "connectors", "schedules"):
        __import__(package)
        for info in pkgutil.walk_packages([str(root / package)], prefix=f"{package}."):
            __import__(info.name)


def main() -> None:
    mode, action, path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "windows":
        emulate_windows_locking()
    if action == "imports":
        sys.modules["fcntl"] = None  # type: ignore[assignment]  # as on Windows
        import_everything()
        print("ok", flush=True)
        return

    from service.errors import LockedError

    if path.suffix == ".xlsx":
        from connectors.xlsx import writer_lock

        def lock():  # type: ignore[no-untyped-def]
            return writer_lock(path, 0)
    else:
        from service.ledger import Ledger

        ledger = Ledger(path)

        def lock():  # type: ignore[no-untyped-def]
            return ledger.exclusive("intake")

    try:
        with lock() as mine:
            if action == "hold":
                print("locked" if mine is not False else "busy", flush=True)
                sys.stdin.read()
            else:
                print("got" if mine is not False else "busy: the cycle lock is held", flush=True)
    except LockedError as exc:
        print(f"busy: {exc}", flush=True)


if __name__ == "__main__":
    main()
