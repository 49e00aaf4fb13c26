"""The sandbox one folder's check runs in: bubblewrap (``bwrap``), bounds, and the solution's own uid.

The whole check of a folder (its Redis, the solution's programs, the orchestration that talks
to them) runs inside one bwrap sandbox, so the course's addresses (Redis on 127.0.0.1:6379,
the APIs on port 1245) are the folder's own and any number of checks run side by side:

- the system and the project (``.venv`` included) are mounted read-only; ``/tmp`` is a private
  tmpfs of bounded size holding the folder's copy and a private home; the homes of the
  machine (``/home``, ``/root``, ``$HOME``) and ``/run`` are hidden behind empty tmpfs;
- its own network namespace: its loopback only (bwrap brings ``lo`` up), no other address;
- its own pid namespace, ended with its parent (``--die-with-parent``): nothing survives;
- run as root (the usual case for a grading machine), the orchestration keeps only the
  capabilities it needs, and every program of the solution runs as an unprivileged uid of
  its own (``setpriv``) with bounds on CPU time, memory, file size and processes
  (``prlimit``). RLIMIT_NPROC counts the processes of a uid and does not bind root, so the
  uid is what makes the process bound hold (cgroups are not writable in a container).
  Run by another user, bwrap makes a user namespace: the bounds still hold, but the
  solution's programs share the orchestration's uid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import sys
import time
from pathlib import Path
from typing import IO

from checker.lessons import ROOT

BWRAP = "bwrap"
INSTALL_HINT = "make check runs each solution in a sandbox: install bubblewrap (apt-get install bubblewrap)"

# Per process of the solution.
CPU_SECONDS = 60
MEMORY_BYTES = 1 << 30  # RLIMIT_DATA: heap and private mappings (RLIMIT_AS would count reservations)
FILE_BYTES = 64 << 20
# For all of the solution's processes and threads together (a threaded server's 100 requests too).
PROCESSES = 256
# The sandbox's /tmp: the folder's copy, the private home, its Redis's data; and its /dev/shm.
TMP_BYTES = 512 << 20
SHM_BYTES = 64 << 20

# Paths inside the sandbox.
SUBMITTED = "/tmp/submitted"  # the staged copy, read-only
WORKSPACE = "/tmp/solution"  # the solution's own writable copy
HOME = "/tmp/home"
REDIS_DATA = "/tmp/redis"  # the run's own Redis's directory, written by it alone
# redis-server and redis-cli, on the solution's PATH: task 0 cannot download Redis without a network.
TOOLS = "/tmp/tools"
RESULT = "/tmp/result"  # where the orchestration writes its verdicts (the solution cannot)

# The orchestration's capabilities, as root: run programs as the solution's uid, signal and
# kill them, hand the copy and the home to that uid, read what they wrote (a dump.rdb made
# 0600). No CAP_SYS_ADMIN: nothing can be remounted. The run's Redis gets none of them.
# CAP_SETPCAP: to empty the bounding set of what it starts (root would otherwise regain it on exec).
CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETPCAP")
# Before the run's redis-server: every capability dropped, for good.
NO_CAPABILITIES = ("setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--")
# The solution's uids: one per check, far from any account's.
FIRST_UID = 100_000
UIDS = 800_000


def bwrap_path() -> str | None:
    return shutil.which(BWRAP)


def as_root() -> bool:
    return os.geteuid() == 0


def solution_uid(slot: int) -> int:
    """A uid for one check: distinct for the checks of one run, and across runs side by side."""
    return FIRST_UID + (os.getpid() * 64 + slot) % UIDS


def limits_launcher(uid: int | None) -> tuple[str, ...]:
    """The command before ``python NAME``: the bounds, then (as root) the solution's uid."""
    bounds = (
        "prlimit",
        f"--cpu={CPU_SECONDS}",
        f"--data={MEMORY_BYTES}",
        f"--fsize={FILE_BYTES}",
        f"--nproc={PROCESSES}",
        "--core=0",
        "--",
    )
    if uid is None:
        return (*bounds, "setpriv", "--no-new-privs", "--")
    identity = (f"--reuid={uid}", f"--regid={uid}", "--clear-groups")
    return (*bounds, "setpriv", *identity, "--no-new-privs", "--bounding-set=-all", "--")


def hidden_paths() -> list[str]:
    """The machine's homes and runtime directory: the solution sees empty ones."""
    candidates = ["/home", "/root", os.path.expanduser("~"), "/run"]
    return sorted({path for path in candidates if os.path.isdir(path) and path != "/"})


def exposed_again(hidden: list[str], paths: list[Path]) -> list[str]:
    """The paths the check needs that lie under a hidden one: mounted again, read-only."""
    return sorted(
        {str(path) for path in paths if any(path.is_relative_to(directory) for directory in hidden)},
    )


def mounted_readable(path: Path) -> list[str]:
    """bwrap arguments that mount ``path`` read-only where the solution's uid can reach it.

    A bind mount keeps the mode of the folder it mounts: a project cloned into a folder of
    mode 0700 (``mktemp -d``) would hide the project's Python packages from the solution. Such
    a folder is made anew, 0755, and each thing in it mounted one by one.
    """
    if not path.is_dir() or path.stat().st_mode & stat.S_IXOTH:
        return ["--ro-bind", str(path), str(path)]
    arguments = ["--perms", "0755", "--dir", str(path)]
    for child in sorted(path.iterdir()):
        arguments += ["--ro-bind", str(child), str(child)]
    return arguments


def bwrap_command(
    staged: Path, result: Path, redis_bin: Path, inner: list[str], env: dict[str, str]
) -> list[str]:
    """The bwrap command line that runs ``inner`` (the orchestration) on one staged folder."""
    hidden = hidden_paths()
    needed = [ROOT, Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), redis_bin.resolve()]
    command = [
        BWRAP,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--perms", "01777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
        # POSIX shared memory (multiprocessing's locks and heaps): writable, bounded too.
        "--perms", "01777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
    ]  # fmt: skip
    for directory in hidden:
        command += ["--tmpfs", directory]
    # The private /tmp hides whatever the machine keeps there too: a project cloned under /tmp, say.
    covered = [*hidden, "/tmp"]
    for path in exposed_again(covered, needed):
        # bwrap would make the folders leading to it 0700: the solution's uid could not reach it.
        for parent in reversed(Path(path).parents):
            if any(parent.is_relative_to(directory) and str(parent) != directory for directory in covered):
                command += ["--perms", "0755", "--dir", str(parent)]
        command += mounted_readable(Path(path))
    command += [
        "--ro-bind", str(staged), SUBMITTED,
        "--bind", str(result), RESULT,
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session",
        "--chdir", str(ROOT),
        "--clearenv",
    ]  # fmt: skip
    if as_root():
        command += ["--cap-drop", "ALL"]
        for capability in CAPABILITIES:
            command += ["--cap-add", capability]
    for name, value in env.items():
        command += ["--setenv", name, value]
    return [*command, "--", *inner]


def processes_of(uid: int) -> list[int]:
    """The pids (in this pid namespace) of the processes running as ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        # A zombie is dead already: its parent (the orchestration, or bwrap's init) reaps it.
        if str(uid) in fields.get("Uid", "").split() and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry.name))
    return pids


def holders_of(pipe: IO[str]) -> list[int]:
    """The other processes holding ``pipe`` open (either end), from /proc."""
    target = f"pipe:[{os.fstat(pipe.fileno()).st_ino}]"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            descriptors = list(os.scandir(Path(entry.path, "fd")))
        except OSError:  # it ended meanwhile, or is another user's
            continue
        for descriptor in descriptors:
            with contextlib.suppress(OSError):  # closed meanwhile
                if os.readlink(descriptor.path) == target:
                    pids.append(int(entry.name))
                    break
    return pids


def kill_everything_of(uid: int, rounds: int = 100) -> None:
    """Kill every process of the solution's uid, until none is left (a fork bomb keeps forking)."""
    for _ in range(rounds):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
