"""The course run and the checker: ``make tour`` (this project's own lessons) and ``make check``
(anyone's solution, in a sandbox). Kept apart from ``course/``, the lessons' helpers: a learner
reading those never meets the grading machinery. The arrows go one way: checker imports course.
"""
