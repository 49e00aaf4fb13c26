"""Task 8: create one notification job with create_push_notifications_jobs, and exit.

No processor serves push_notification_code_3 in the course, so this does not wait for the job.
"""

import importlib

from redis_connection import reach_redis
from rq import Queue

# A module whose name starts with a digit cannot be named in an import statement.
create_push_notifications_jobs = importlib.import_module("8_job").create_push_notifications_jobs

JOBS = [{"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"}]


def main() -> None:
    connection = reach_redis(decode_responses=False)
    create_push_notifications_jobs(JOBS, Queue("push_notification_code_3", connection=connection))


if __name__ == "__main__":
    main()
