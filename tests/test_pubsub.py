"""Task 5 run as a learner runs it: the subscriber first, then the publisher, on a real Redis."""

from __future__ import annotations

from course import expected

import pytest

from checker.lessons import lines, run_script, start_script, stop_script, wait_for_line

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def subscriber(redis_url):
    """``5_subscriber.py`` in the background, and the lines it printed up to its connected line."""
    process = start_script("5_subscriber.py", redis_url)
    yield process, wait_for_line(process, expected.CONNECTED)
    stop_script(process)


def test_subscriber_and_publisher_print_the_course_output(subscriber, redis_url):
    process, first_lines = subscriber

    published = run_script("5_publisher.py", redis_url)
    output, errors = process.communicate(timeout=20)

    assert lines(published.stdout) == expected.PUBLISHER
    assert (published.stderr, published.returncode) == ("", 0)
    assert first_lines + lines(output) == expected.SUBSCRIBER
    assert (errors, process.returncode) == ("", 0)


def test_subscriber_is_subscribed_once_it_says_it_is_connected(subscriber, real_redis):
    process, first_lines = subscriber
    assert first_lines == [expected.CONNECTED]

    # PUBLISH answers how many subscribers received the message.
    assert real_redis.publish(expected.CHANNEL, "KILL_SERVER") == 1
    output, _ = process.communicate(timeout=20)
    assert lines(output) == ["KILL_SERVER"]
    assert process.returncode == 0


def test_subscriber_prints_any_message_until_kill_server(subscriber, real_redis):
    process, _ = subscriber
    for message in ["first", "second line", "KILL_SERVER", "after"]:
        real_redis.publish(expected.CHANNEL, message)
    output, _ = process.communicate(timeout=20)

    assert lines(output) == ["first", "second line", "KILL_SERVER"]
    assert real_redis.pubsub_numsub(expected.CHANNEL) == [(expected.CHANNEL, 0)]


def test_subscriber_prints_a_message_without_acting_on_the_terminal(subscriber, real_redis):
    process, _ = subscriber
    # Clear the screen and ring the bell, then bytes that are not UTF-8.
    for message in ["\x1b[2Jcleared\x07", b"\xff\xfe", "KILL_SERVER"]:
        real_redis.publish(expected.CHANNEL, message)
    output, errors = process.communicate(timeout=20)

    assert lines(output) == ["\\x1b[2Jcleared\\x07", "\ufffd\ufffd", "KILL_SERVER"]
    assert (errors, process.returncode) == ("", 0)


@pytest.mark.parametrize("script", ["5_subscriber.py", "5_publisher.py"])
def test_without_redis_it_says_so_and_exits_non_zero(script, dead_redis_url):
    result = run_script(script, dead_redis_url)

    assert lines(result.stdout)
    assert all(line.startswith(expected.NOT_CONNECTED_PREFIX) for line in lines(result.stdout))
    assert result.stderr == ""
    assert result.returncode == 1
