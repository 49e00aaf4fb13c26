"""How long ``make check`` takes for a class: one folder alone, then ten folders with one command.

The folders are copies of one solution (by default the plain reference solution,
tests/solutions/plain), checked in their sandboxes side by side up to the machine's cores.
Prints the command's own output (the table), the JSON report's summary, and both wall times.

    .venv/bin/python bench/check_class.py [--solution DIR] [--folders 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ROOT / "tests" / "solutions" / "plain"


def check(*arguments: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``python -m checker.check`` with the arguments: its wall time and its result."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "checker.check", *arguments], cwd=ROOT, capture_output=True, text=True
    )
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--solution", type=Path, default=PLAIN, help="the folder copied (default: %(default)s)"
    )
    parser.add_argument("--folders", type=int, default=10, help="how many folders in the class (default 10)")
    args = parser.parse_args()
    if not args.solution.is_dir():
        parser.error(f"{args.solution} is not a folder")
    with tempfile.TemporaryDirectory(prefix="check-class-") as directory:
        folders = [Path(directory, f"student-{number:02}") for number in range(1, args.folders + 1)]
        for folder in folders:
            shutil.copytree(args.solution, folder)
        one_seconds, one = check(str(folders[0]))
        print(
            f"one folder: {one_seconds:.1f} s ({one.stdout.splitlines()[-1] if one.stdout else one.stderr})"
        )
        report = Path(directory, "report.json")
        class_seconds, whole = check(*map(str, folders), "--report", str(report))
        print(whole.stdout[whole.stdout.index("folder ") :] if "folder " in whole.stdout else whole.stdout)
        solutions = json.loads(report.read_text())["solutions"] if report.exists() else []
        matched = [solution["matched"] for solution in solutions]
        print(
            f"{len(folders)} folders with one command: {class_seconds:.1f} s,"
            f" exit status {whole.returncode}, tasks matched per folder {matched}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
