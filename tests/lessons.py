"""The tests run the lessons through the same helpers as ``make tour``."""

from course.lessons import ROOT, lines, run_script, start_script, stop_script, wait_for_line

__all__ = ["ROOT", "lines", "run_script", "start_script", "stop_script", "wait_for_line"]
