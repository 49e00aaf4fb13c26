"""Task 8: use ``create_push_notifications_jobs`` for one job, then leave without waiting.

No processor serves ``push_notification_code_3`` in the course, so waiting for the job's
events would never end: the program stops listening once the job is created.
"""

import importlib

from course.connection import client_from_env, run
from course.settings import parse_command_line

from rq import Queue

# A module whose name starts with a digit cannot be named in an import statement.
create_push_notifications_jobs = importlib.import_module("8_job").create_push_notifications_jobs

JOBS = [{"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"}]


def main() -> None:
    # Like Kue's createQueue(): the queue stands for the Redis server the jobs go to.
    queue = Queue(connection=client_from_env(decode_responses=False))
    create_push_notifications_jobs(JOBS, queue).close()


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
