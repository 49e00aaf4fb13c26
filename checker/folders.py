"""Where a student put the course's files, and a safe copy of them.

Students submit the course's folder the way they keep it: the files themselves, the
repository's root with the tasks in ``0x03-queuing_system_in_js/``, or the JS course's names
(``0-redis_client.py``). The check finds them there and says what to rename.

The copy never follows a link out of the folder and never reads what is not a regular file:
a link to ``/dev/zero``, to ``~/.ssh`` or to ``.``, a FIFO, a device, a socket, a file too
large, each is skipped with one line. The whole copy is bounded too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from checker.sandbox import FILE_BYTES

# What a copy leaves out without a word: environments, history, caches.
NOT_COPIED = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
}
# Left out too, so that task 0 is seen writing them: a server's data and the deliverable.
TASK0_OUTPUTS = {".redis", "dump.rdb"}
COPY_BYTES = 100 << 20
COPY_FILES = 5_000
CHUNK = 1 << 16


@dataclass
class Found:
    """The folder holding the course's files, the files under other names, and what to tell the student."""

    folder: Path
    renamed: dict[str, str] = field(default_factory=dict)  # the student's name -> the course's
    notes: list[str] = field(default_factory=list)


def course_name(name: str, course_files: set[str]) -> str | None:
    """The course's name for a file, if ``name`` is one (maybe with the JS course's dashes)."""
    if name in course_files:
        return name
    underscored = name.replace("-", "_")
    return underscored if underscored in course_files else None


def course_files_in(folder: Path, course_files: set[str]) -> dict[str, str]:
    """The course's files a folder holds: the name there -> the course's name."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and (name := course_name(entry.name, course_files)):
            found.setdefault(entry.name, name)
    return found


def find_course_folder(folder: Path, course_files: set[str]) -> Found | None:
    """The folder itself if it holds course files, else the one folder right below that does."""
    found = course_files_in(folder, course_files)
    notes = []
    if not found:
        below = sorted(
            entry.path
            for entry in os.scandir(folder)
            if entry.is_dir(follow_symlinks=False) and course_files_in(Path(entry.path), course_files)
        )
        if not below:
            return None
        folder = Path(below[0])
        found = course_files_in(folder, course_files)
        notes.append(f"the course's files are in {folder.name}/: checked there")
        notes += [f"also holds course files, not checked: {Path(other).name}/" for other in below[1:]]
    renamed = {name: course for name, course in sorted(found.items()) if name != course}
    for name, course in renamed.items():
        if course in found.values() and (folder / course).exists():
            notes.append(f"{name} is not checked: {course} is there too")
        else:
            notes.append(f"{name} checked as {course}: rename it {course}")
    renamed = {name: course for name, course in renamed.items() if not (folder / course).exists()}
    return Found(folder, renamed, notes)


@dataclass
class SafeCopy:
    """Copy a folder's regular files, bounded; ``skipped`` has one line per thing left out."""

    source: Path
    target: Path
    copied_bytes: int = 0
    copied_files: int = 0
    skipped: list[str] = field(default_factory=list)

    def run(self, renamed: dict[str, str]) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        self.copy_directory(self.source, self.target, top=True)
        for name, course in renamed.items():
            if (self.target / name).is_file():
                self.copy_file(self.target / name, self.target / course, f"{name} (as {course})")

    def skip(self, relative: Path, why: str) -> None:
        self.skipped.append(f"skipped {relative}: {why}")

    def copy_directory(self, source: Path, target: Path, top: bool = False) -> None:
        with os.scandir(source) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                if entry.name in NOT_COPIED or (top and entry.name in TASK0_OUTPUTS):
                    continue
                self.copy_entry(Path(entry.path), target / entry.name)

    def copy_entry(self, source: Path, target: Path) -> None:
        relative = source.relative_to(self.source)
        try:
            mode = source.lstat().st_mode
        except OSError as error:
            self.skip(relative, error.strerror or str(error))
            return
        if stat.S_ISLNK(mode):
            self.copy_link(source, target, relative)
        elif stat.S_ISDIR(mode):
            target.mkdir()
            self.copy_directory(source, target)
        elif stat.S_ISREG(mode):
            self.copy_file(source, target, relative)
        else:
            self.skip(relative, kind_of(mode))

    def copy_link(self, source: Path, target: Path, relative: Path) -> None:
        """A link to a regular file inside the folder is copied as that file; any other is skipped."""
        pointed = os.readlink(source)
        try:
            resolved = source.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling, or a loop of links
            self.skip(relative, f"a link to {pointed}, which leads nowhere")
            return
        if not resolved.is_relative_to(self.source.resolve()):
            self.skip(relative, f"a link to {pointed}, outside the folder")
        elif not resolved.is_file():
            self.skip(relative, f"a link to {pointed}, not to a file")
        else:
            self.copy_file(resolved, target, relative)

    def copy_file(self, source: Path, target: Path, relative: Path | str) -> None:
        if self.copied_files >= COPY_FILES:
            self.skip(Path(relative), f"the copy holds {COPY_FILES} files already")
            return
        try:
            # O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a FIFO since lstat is not followed
            # nor waited on; fstat then says what was opened.
            descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as error:
            self.skip(Path(relative), error.strerror or str(error))
            return
        with open(descriptor, "rb") as reader:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                self.skip(Path(relative), kind_of(status.st_mode))
                return
            if status.st_size > FILE_BYTES:
                self.skip(Path(relative), f"{mib(status.st_size)} (a file may hold {mib(FILE_BYTES)})")
                return
            if self.copied_bytes + status.st_size > COPY_BYTES:
                self.skip(Path(relative), f"the copy would exceed {mib(COPY_BYTES)}")
                return
            with open(target, "wb") as writer:
                # Read no more than the bound: a file that grows meanwhile is cut there.
                left = min(FILE_BYTES, COPY_BYTES - self.copied_bytes)
                while left > 0 and (chunk := reader.read(min(CHUNK, left))):
                    writer.write(chunk)
                    left -= len(chunk)
                    self.copied_bytes += len(chunk)
            os.chmod(target, 0o755 if status.st_mode & stat.S_IXUSR else 0o644)
        self.copied_files += 1


def kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"
