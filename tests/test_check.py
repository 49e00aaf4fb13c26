"""``make check``: folders built in a temporary directory, honest and hostile, checked in the sandbox.

Real processes all the way: bwrap, the folder's programs, a redis-server in each sandbox, and a
real server standing for the instructor's own Redis on a loopback port the hostile code is told.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from course import expected

import pytest

from checker import check as class_check
from checker import compare, folders
from checker.course_run import COURSE_FILES
from checker.lessons import ROOT
from checker.report import Outcome, diff
from tests.support import REDIS_BIN, descendants, is_running, snapshot

pytestmark = [
    pytest.mark.long,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("bwrap") is None, reason="make check needs bubblewrap (apt-get install bubblewrap)"
    ),
]

# A bound for a broken run, not an expectation of speed: a hung check fails the test.
CHECK_TIMEOUT_SECONDS = 540
PLAIN = ROOT / "tests" / "solutions" / "plain"
MARKER_SECONDS = "987654"  # the hostile folder's `setsid sleep`, found by its argument


def write_folder(directory: Path, **files: str) -> Path:
    """A folder of ``files`` (name: source); a name's ``__`` stands for a sub-folder's ``/``."""
    for name, source in files.items():
        path = directory / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return directory


def check(
    *folders_and_options: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checker.check", *map(str, folders_and_options)],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_SECONDS,
    )


def task_block(stdout: str, number: int) -> str:
    return stdout.split(f"== Task {number}:")[1].split("\n== Task")[0]


def tree_digest(*paths: Path) -> str:
    """One digest of every file under the paths (names, contents): what must not change."""
    digest = hashlib.sha256()
    for top in paths:
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
                digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


# Honest solutions: the plain reference solution, and variants of it ------------------------
# tests/solutions/plain: redis-py, RQ (UUID ids, its default logging, its own workers) and Flask
# (jsonify, app.run(port=1245)), hosts and ports hard-coded.

# One change per task, each of the kind a learner makes: the file, its text in the plain solution,
# the text instead, and the reason the broken task gets (the first thing wrong, blamed on its file).
BREAKAGES = {
    0: (
        "redis_setup.sh",
        "cli set Holberton School",
        "cli set Holberton College",
        "redis_setup.sh exited with status 1, the end of its stderr:",
    ),
    1: (
        "0_redis_client.py",
        "from redis_connection",
        'raise RuntimeError("no server for me")\nfrom redis_connection',
        "0_redis_client.py exited with status 1, the end of its stderr:",
    ),
    2: ("1_redis_op.py", "{'OK' if reply else reply}", "{reply}", "1_redis_op.py printed something else:"),
    3: (
        "2_redis_op_async.py",
        '"HolbertonSanFrancisco", "100"',
        '"HolbertonSanFrancisco", "101"',
        "2_redis_op_async.py printed something else:",
    ),
    4: (
        "4_redis_advanced_op.py",
        'f"Reply: {added}"',
        'f"Reply:{added}"',
        "4_redis_advanced_op.py printed something else:",
    ),
    5: (
        "5_publisher.py",
        'if __name__ == "__main__":',
        'def (\nif __name__ == "__main__":',
        "5_publisher.py exited with status 1, the end of its stderr:",
    ),
    6: (
        "6_job_processor.py",
        'if __name__ == "__main__":',
        'raise SystemExit(3)\nif __name__ == "__main__":',
        "6_job_processor.py exited with status 3",
    ),
    7: (
        "7_job_processor.py",
        "set_progress(job, 0)",
        "set_progress(job, 10)",
        "7_job_creator.py printed something else:",
    ),
    8: (
        "8_job.py",
        '"Jobs is not an array"',
        '"Jobs must be a list"',
        "create_push_notifications_jobs does not do what the course says:",
    ),
    9: (
        "9_stock.py",
        'status="Product not found"',
        'status="No such product"',
        "curl printed something else:",
    ),
    10: (
        "100_seat.py",
        'status="Reservation in process"',
        'status="Reservation in progress"',
        "curl printed something else:",
    ),
}
# A library's warning on stderr fails nothing.
WARNING = 'import warnings\n\nwarnings.warn("this call is deprecated", DeprecationWarning)\n'
# The course's JavaScript, in the plain solution's Flask: read the stock, wait, write it back less one.
ATOMIC_TAKE = """\
    if not take_one_unit(keys=[f"item.{item_id}"], args=[item["initialAvailableQuantity"]]):
        return jsonify(status="Not enough stock available", itemId=item_id)
"""
READ_THEN_WRITE = """\
    current = get_current_reserved_stock_by_id(item_id)
    current = item["initialAvailableQuantity"] if current is None else current
    if current < 1:
        return jsonify(status="Not enough stock available", itemId=item_id)
    __import__("time").sleep(0.2)
    reserve_stock_by_id(item_id, current - 1)
"""


def plain_variant(target: Path, files: list[str] | None = None, **changes: tuple[str, str]) -> Path:
    """A copy of the plain solution (only ``files`` if given), each change a (text, replacement) in a file."""
    shutil.copytree(PLAIN, target, ignore=None if files is None else lambda _, names: set(names) - set(files))
    for name, (old, new) in changes.items():
        source = (target / name).read_text()
        assert old in source, f"{old!r} is no longer in the plain solution's {name}"
        (target / name).write_text(source.replace(old, new))
    return target


def broken_plain(target: Path) -> Path:
    plain_variant(target)
    for name, old, new, _ in BREAKAGES.values():
        source = (target / name).read_text()
        assert old in source, f"{old!r} is no longer in the plain solution's {name}"
        (target / name).write_text(source.replace(old, new, 1))
    return target


def test_a_class_the_plain_solution_and_the_project_match_and_a_broken_copy_gets_a_reason_per_task(tmp_path):
    plain = plain_variant(tmp_path / "plain")
    broken = broken_plain(tmp_path / "broken")
    helpers = ["redis_connection.py"]
    nested = plain_variant(tmp_path / "nested" / "0x03-queuing_system_in_js", ["0_redis_client.py", *helpers])
    (nested / "0_redis_client.py").write_text(WARNING + (nested / "0_redis_client.py").read_text())
    js_named = plain_variant(tmp_path / "js-named", ["0_redis_client.py", "1_redis_op.py", *helpers])
    overselling = plain_variant(
        tmp_path / "overselling",
        ["9_stock.py", "json_errors.py", *helpers],
        **{"9_stock.py": (ATOMIC_TAKE, READ_THEN_WRITE)},
    )
    for name in ("0_redis_client.py", "1_redis_op.py"):
        (js_named / name).rename(js_named / name.replace("_", "-", 1))
    report = tmp_path / "report.json"

    # This project's own folder too: its processors and servers (multiprocessing, granian) in the sandbox.
    folders = [plain, broken, tmp_path / "nested", js_named, overselling, ROOT]
    # 40 s, not the default 60: the broken task 6's creator waits that long. Less (20 s) failed an
    # honest task once, with six checks at once beside other tests on 2 cores.
    result = check(*folders, "--report", report, "--verbose", "--timeout", "40")

    assert result.returncode == 1, result.stdout[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    solutions = {
        Path(solution["folder"]).name: solution for solution in json.loads(report.read_text())["solutions"]
    }
    tasks = {name: {task["task"]: task for task in solution["tasks"]} for name, solution in solutions.items()}
    assert solutions["plain"]["matched"] == 11, solutions["plain"]
    assert {
        number: (task["verdict"] != "match", task["reason"].startswith(BREAKAGES[number][3]))
        for number, task in tasks["broken"].items()
    } == dict.fromkeys(range(11), (True, True)), tasks["broken"]
    assert tasks["nested"][1]["verdict"] == "match"
    assert (
        "the course's files are in 0x03-queuing_system_in_js/: checked there" in solutions["nested"]["notes"]
    )
    assert [tasks["js-named"][number]["verdict"] for number in (1, 2)] == ["match", "match"]
    assert (
        "0-redis_client.py checked as 0_redis_client.py: rename it 0_redis_client.py"
        in solutions["js-named"]["notes"]
    )
    # jsonify's answers are counted, an oversell is a warning, and the APIs on port 1245 did not meet.
    assert "| 100 requests for item 1, 4 in stock: 4 confirmed, 96 not enough stock\n" in result.stdout
    assert tasks["overselling"][9]["verdict"] == "match"
    assert "! warning: reservations oversell: " in result.stdout.split(f"==== {overselling}")[1]
    table = result.stdout[result.stdout.index("\nfolder ") + 1 :].splitlines()
    assert table[0].split() == ["folder", *map(str, range(11)), "matched"]
    project_misses = [task for task in solutions[ROOT.name]["tasks"] if task["verdict"] != "match"]
    matched = [row.split()[-1] for row in table[1:7]]
    assert matched == ["11/11", "0/11", "1/11", "2/11", "1/11", "11/11"], project_misses


def still_running(pids: list[int]) -> list[str]:
    """Each of ``pids`` still running, with its parent (a sandbox left on its own has init's) and command."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):  # it ended meanwhile
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:100]
            found.append(f"{pid} (parent {parent}): {command.decode(errors='replace')}")
    return found


def test_ctrl_c_ends_a_class_check_and_everything_in_its_sandboxes(tmp_path):
    folders = [plain_variant(tmp_path / f"student-{number}") for number in (1, 2)]
    checking = subprocess.Popen(
        [sys.executable, "-m", "checker.check", *map(str, folders)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Each sandbox: bwrap, its init, the orchestration, and a program of the solution's or its Redis.
    deadline = time.monotonic() + 60
    while len(started := descendants(checking.pid)) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)

    checking.send_signal(signal.SIGINT)
    try:
        stdout, stderr = checking.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        hung = still_running(started)
        checking.kill()
        pytest.fail(f"no answer within 30 s of Ctrl-C; of its processes, still running: {hung}")

    assert checking.returncode == 130, stdout + stderr
    assert stdout.endswith("\nCheck interrupted\n")
    deadline = time.monotonic() + 10
    while (left := [pid for pid in started if is_running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


def test_a_sandbox_about_to_start_as_ctrl_c_sweeps_the_others_never_starts(tmp_path, monkeypatch):
    """A folder's thread that reached its sandbox just after Ctrl-C's sweep started it, and the check
    waited for that sandbox to end (CI: no answer within 30 s of Ctrl-C)."""
    monkeypatch.setattr(class_check, "STOPPING", threading.Event())
    marker = tmp_path / "started"
    folder_check = class_check.FolderCheck("late", tmp_path, 0)

    class_check.end_every_sandbox()
    status = class_check.run_sandbox(["touch", str(marker)], folder_check, echo=False)

    assert (status, marker.exists(), class_check.RUNNING) == (-signal.SIGINT, False, set())


def test_ctrl_c_ends_a_sandbox_caught_in_its_setup(tmp_path, monkeypatch):
    """bwrap ties its sandbox to its own life (--die-with-parent) only once the sandbox is set up:
    killed before, it left the sandbox running on, holding the output its folder's thread read, and
    the check waited for the thread (CI: no answer within 30 s of Ctrl-C)."""
    monkeypatch.setattr(class_check, "STOPPING", threading.Event())
    monkeypatch.setattr(class_check, "RUNNING", set())
    setup = tmp_path / "setup"
    os.mkfifo(setup)
    # --block-fd holds the sandbox in its setup until a byte comes: the FIFO, opened read-write, never ends.
    sandboxed = "bwrap --ro-bind / / --unshare-pid --die-with-parent --block-fd 3 -- echo ran"
    command = ["sh", "-c", f'exec 3<>"$0"; exec {sandboxed}', str(setup)]
    folder_check = class_check.FolderCheck("caught", tmp_path, 0)
    reading = threading.Thread(target=class_check.run_sandbox, args=(command, folder_check, False))
    reading.start()
    deadline = time.monotonic() + 30
    while not (in_setup := [pid for bwrap in list(class_check.RUNNING) for pid in descendants(bwrap.pid)]):
        assert time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.05)

    class_check.end_every_sandbox()
    reading.join(timeout=30)

    try:
        deadline = time.monotonic() + 10
        while (left := [pid for pid in in_setup if is_running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (reading.is_alive(), left, folder_check.transcript) == (False, [], [])
    finally:  # a sandbox that outlived the sweep goes on to its end
        with contextlib.suppress(OSError):
            release = os.open(setup, os.O_WRONLY | os.O_NONBLOCK)
            os.write(release, b"x")
            os.close(release)
        reading.join()


# Hostile folders -----------------------------------------------------------------------------

HOSTILE_CLIENT = """\
import os
import subprocess
from pathlib import Path

import redis

# The instructor's Redis, its port told to the solution: out of reach (the sandbox's own loopback).
try:
    redis.Redis(port={instructor_port}, socket_timeout=2).flushall()
    print("flushed the instructor's Redis")
except redis.RedisError as error:
    print("instructor's Redis out of reach:", type(error).__name__)
redis.Redis(port=6379).flushall()  # its own sandbox's: allowed
for target in [{home!r} + "/pwned", {root!r} + "/8_job.test.py", {pth!r}, os.path.expanduser("~/.bashrc")]:
    try:
        Path(target).write_text("import os; os.system('touch /tmp/owned')\\n")
        print("wrote", target)
    except OSError as error:
        print("could not write", target, error.strerror)
subprocess.Popen(["setsid", "sleep", "{marker}"])
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
print("capabilities:", status["CapEff"].strip(), status["CapBnd"].strip(), "uid:", os.getuid())
print("\\x1b[2J\\x1b[31mRedis client connected to the server")
"""
MEMORY_BOMB = "data = bytearray(4 << 30)\nprint(len(data))\n"
DISK_FILLER = 'with open("filler", "wb") as filler:\n    filler.write(b"x" * (65 << 20))\n'
FORK_BOMB = """\
import os
import time

while True:
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
"""
FAKE_PYTEST = 'print("3 passed")\nraise SystemExit(0)\n'
# Task 8 without its input check: the check's own test must say so, whatever pytest.py claims.
NO_INPUT_CHECK = """\
from rq import Queue


def create_push_notifications_jobs(jobs, queue):
    for data in jobs:
        job = Queue("push_notification_code_3", connection=queue.connection).enqueue(print, data)
        print(f"Notification job created: {job.id}")
"""
JOB_MAIN = """\
import importlib

from redis import Redis
from rq import Queue

create = importlib.import_module("8_job").create_push_notifications_jobs
job = {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"}
create([job], Queue(connection=Redis()))
"""


@pytest.fixture
def instructor_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "instructor-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    monkeypatch.setenv("HOME", str(home))
    # The instructor's Redis build, wherever the tests found it: without it, run by a bare
    # pytest, the checker would build Redis into this home's cache and the home would change.
    monkeypatch.setenv("REDIS_BIN_DIR", str(REDIS_BIN))
    return home


def test_a_hostile_folder_changes_nothing_outside_its_sandbox_and_is_bounded(
    tmp_path, learner_redis, instructor_home
):
    site_packages = next((ROOT / ".venv" / "lib").glob("python*/site-packages"))
    hostile = write_folder(
        tmp_path / "hostile",
        **{
            "0_redis_client.py": HOSTILE_CLIENT.format(
                instructor_port=learner_redis.port,
                home=str(instructor_home),
                root=str(ROOT),
                pth=str(site_packages / "evil.pth"),
                marker=MARKER_SECONDS,
            ),
            "1_redis_op.py": MEMORY_BOMB,
            "2_redis_op_async.py": FORK_BOMB,
            "4_redis_advanced_op.py": DISK_FILLER,
            "8_job.py": NO_INPUT_CHECK,
            "8_job_main.py": JOB_MAIN,
            "pytest.py": FAKE_PYTEST,
            "conftest.py": 'raise SystemExit("a conftest.py of the folder was loaded")\n',
            "sitecustomize.py": 'print("a sitecustomize.py of the folder was loaded")\n',
        },
    )
    (hostile / "zero").symlink_to("/dev/zero")
    (hostile / "ssh").symlink_to(instructor_home / ".ssh")
    (hostile / "loop").symlink_to(".")
    os.mkfifo(hostile / "pipe")
    with open(hostile / "huge.bin", "wb") as huge:  # sparse: takes no room here
        huge.truncate(65 << 20)
    redis_before = snapshot(learner_redis.url)
    home_before = tree_digest(instructor_home)
    project_before = tree_digest(ROOT / "8_job.test.py", ROOT / "checker", ROOT / "course", site_packages)

    result = check(hostile, "--timeout", "20")

    out = result.stdout
    assert snapshot(learner_redis.url) == redis_before
    assert tree_digest(instructor_home) == home_before
    assert (
        tree_digest(ROOT / "8_job.test.py", ROOT / "checker", ROOT / "course", site_packages)
        == project_before
    )
    assert not any(
        MARKER_SECONDS in path.read_text(errors="replace") for path in Path("/proc").glob("[0-9]*/cmdline")
    )
    assert "instructor's Redis out of reach" in out, out[-5000:]
    assert "| capabilities: 0000000000000000 0000000000000000 uid: " in out
    assert "uid: 0\n" not in out
    for target in (instructor_home / "pwned", ROOT / "8_job.test.py", site_packages / "evil.pth"):
        assert f"| could not write {target} " in out
    # Each thing the copy leaves out, on one line.
    assert f"{hostile}: skipped huge.bin: 65 MiB (a file may hold 64 MiB)\n" in out
    assert f"{hostile}: skipped loop: a link to ., not to a file\n" in out
    assert f"{hostile}: skipped pipe: a named pipe (FIFO)\n" in out
    assert f"{hostile}: skipped ssh: a link to {instructor_home / '.ssh'}, outside the folder\n" in out
    assert f"{hostile}: skipped zero: a link to /dev/zero, outside the folder\n" in out
    # What the solution printed reaches the terminal escaped.
    assert "\x1b" not in out
    assert "| \\x1b[2J\\x1b[31mRedis client connected to the server" in out
    assert "memory bound of 1 GiB reached" in task_block(out, 2)
    assert "process bound of 256 processes reached" in task_block(out, 3)
    assert "file size bound of 64 MiB reached" in task_block(out, 4)
    task8 = task_block(out, 8)
    assert "✗ Task 8" in task8 and "create_push_notifications_jobs does not do what the course says" in task8
    assert "3 passed" not in task8.split("(the folder's own tests)")[0]
    assert "loaded" not in out
    assert "Traceback" not in result.stderr


def test_without_bubblewrap_make_check_says_how_to_install_it(tmp_path):
    folder = write_folder(tmp_path / "solution", **{"0_redis_client.py": "print('never run')\n"})
    no_bwrap = tmp_path / "bin"
    no_bwrap.mkdir()
    (no_bwrap / "python").symlink_to(sys.executable)

    result = check(folder, env={**os.environ, "PATH": str(no_bwrap)})

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "make check runs each solution in a sandbox: install bubblewrap (apt-get install bubblewrap)"
    )


def test_a_folder_without_the_course_files_and_a_missing_folder_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()

    nothing = check(empty)
    no_folder = check(tmp_path / "nowhere")

    assert nothing.returncode == 1
    assert nothing.stdout.startswith(f"No course file in {empty}: nothing to check")
    assert no_folder.returncode == 2
    assert "is not a folder" in no_folder.stderr
    assert "Traceback" not in nothing.stderr + no_folder.stderr


# The comparison's rules, without processes ---------------------------------------------------

UUIDS = ["0b6c2a8e-5d3f-4c1e-9a7b-2f4e6d8c0a1b", "7d1e9f3a-2b4c-4d6e-8f0a-1c3e5a7b9d2f"]


def test_job_ids_are_any_token_numbered_in_order_and_the_same_job_keeps_its_number():
    printed = [
        f"Notification job created: {UUIDS[0]}",
        f"Notification job created: {UUIDS[1]}",
        f"Notification job {UUIDS[1]} 0% complete",
        f"Notification job {UUIDS[0]} failed: Phone number 4153518780 is blacklisted",
        "Notification job completed",
    ]

    assert compare.numbered_ids(printed) == [
        "Notification job created: 1",
        "Notification job created: 2",
        "Notification job 2 0% complete",
        "Notification job 1 failed: Phone number 4153518780 is blacklisted",
        "Notification job completed",
    ]


def test_rq_log_records_and_their_tracebacks_are_left_out_but_a_crash_of_its_own_is_not():
    stderr = [
        "12:00:01 [Job 5]: exception raised while executing (7_job_processor.job)",
        "Traceback (most recent call last):",
        '  File "rq/worker.py", line 1, in perform_job',
        "    raise ValueError(message)",
        "ValueError: Phone number 4153518780 is blacklisted",
        "DeprecationWarning: a library's warning",
    ]
    stdout = ["12:00:00 Worker rq:worker:1 started with PID 7", "Sending notification to 1, with message: m"]

    assert compare.without_rq_log(stdout) == ["Sending notification to 1, with message: m"]
    assert compare.without_rq_log(stderr) == ["DeprecationWarning: a library's warning"]
    assert not compare.crashed(stderr, 0, stopped=False)
    assert not compare.crashed(
        [*stderr, "Traceback (most recent call last):", "KeyboardInterrupt"], -2, stopped=True
    )
    assert compare.crashed([*stderr, "Traceback (most recent call last):", "NameError: x"], 0, stopped=True)
    assert compare.crashed([], 1, stopped=False)


def test_json_bodies_are_compared_as_json():
    assert compare.same_json(
        '{\n  "itemId": 1,\n  "status": "Reservation confirmed"\n}\n', expected.RESERVATION_CONFIRMED
    )
    assert not compare.same_json(
        '{"status":"Reservation confirmed","itemId":2}', expected.RESERVATION_CONFIRMED
    )
    assert not compare.same_json("<html>", "<html>")


def test_a_long_diff_is_cut_to_twenty_lines():
    shown = diff([f"line {n}" for n in range(50)], [f"other {n}" for n in range(50)])

    assert len(shown.splitlines()) == 20
    assert shown.splitlines()[:2] == ["--- expected", "+++ got"]
    assert shown.splitlines()[-1].endswith("more lines)")


def test_course_files_are_found_one_level_down_and_under_the_js_names(tmp_path):
    write_folder(tmp_path / "repo", **{"README.md": "", "0x03-queuing_system_in_js__5-subscriber.py": ""})

    found = folders.find_course_folder(tmp_path / "repo", COURSE_FILES)

    assert found.folder == tmp_path / "repo" / "0x03-queuing_system_in_js"
    assert found.renamed == {"5-subscriber.py": "5_subscriber.py"}


def task7_output(drop: str | None = None) -> list[str]:
    """Task 7's creator output with ids 1 to 11, two jobs' lines interleaved, maybe one line dropped."""
    ids = range(1, 12)
    jobs = zip(expected.TASK7_JOBS, ids, strict=True)
    events = [line for job, job_id in jobs for line in expected.task7_events(job, job_id)]
    events[3], events[4] = events[4], events[3]  # job 3 starts before job 2 has failed
    return [*map(expected.created_line, ids), *(line for line in events if line != drop)]


def test_task_7_lines_are_gathered_job_by_job_so_the_diff_shows_only_what_is_wrong():
    interleaved = task7_output()
    assert expected.check_task7_creator(interleaved) == []
    assert expected.task7_in_job_order(interleaved) == expected.task7_creator_wanted(interleaved)

    missing = task7_output(drop="Notification job 5 50% complete")
    outcome = Outcome()
    outcome.check(
        "7_job_creator.py",
        missing,
        expected.check_task7_creator(missing),
        expected.task7_creator_wanted(missing),
        expected.task7_in_job_order(missing),
    )

    changed = [
        line for line in outcome.problems[0].splitlines() if line[:1] in "+-" and line[:3] not in "---+++"
    ]
    assert changed == ["-Notification job 5 50% complete"]
