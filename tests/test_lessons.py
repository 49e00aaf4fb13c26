"""Tasks 1 to 4 run as a learner runs them, on a real Redis, against the course's exact output."""

from __future__ import annotations

import importlib
import time

from course import expected

import pytest

from checker.lessons import lines, run_script

SCRIPTS = {
    "0_redis_client.py": expected.REDIS_CLIENT,
    "1_redis_op.py": expected.REDIS_OP,
    "2_redis_op_async.py": expected.REDIS_OP,
    "4_redis_advanced_op.py": expected.REDIS_ADVANCED_OP,
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_lesson_prints_the_course_output(script, redis_url, real_redis):
    real_redis.set("Holberton", "School")  # what task 0 leaves in the database

    result = run_script(script, redis_url)

    assert lines(result.stdout) == SCRIPTS[script]
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.parametrize("script", ["1_redis_op.py", "2_redis_op_async.py"])
def test_set_new_school_stores_the_value(script, redis_url, real_redis):
    run_script(script, redis_url)

    assert real_redis.get("HolbertonSanFrancisco") == "100"


def test_hash_lesson_reports_existing_fields_on_a_second_run(redis_url, real_redis):
    run_script("4_redis_advanced_op.py", redis_url)

    second = run_script("4_redis_advanced_op.py", redis_url)

    assert lines(second.stdout)[1:7] == ["Reply: 0"] * 6
    assert real_redis.hlen("HolbertonSchools") == 6


@pytest.mark.parametrize("script", ["1_redis_op.py", "2_redis_op_async.py"])
def test_a_value_someone_else_wrote_is_printed_without_acting_on_the_terminal(script, redis_url, real_redis):
    # A terminal title change and a bell, then a byte that is not UTF-8.
    real_redis.set("Holberton", b"\x1b]0;owned\x07\xff")

    result = run_script(script, redis_url)

    assert lines(result.stdout)[1] == "\\x1b]0;owned\\x07\ufffd"
    assert (result.stderr, result.returncode) == ("", 0)


@pytest.mark.parametrize("script", SCRIPTS)
def test_lesson_without_redis_says_so_and_exits_non_zero(script, dead_redis_url):
    started = time.monotonic()

    result = run_script(script, dead_redis_url)

    port = dead_redis_url.rsplit(":", 1)[1].split("/")[0]
    # redis-py's message; the async client words the end differently ("Connect call failed").
    failure = f"{expected.NOT_CONNECTED_PREFIX}Error 111 connecting to 127.0.0.1:{port}. "
    output = lines(result.stdout)
    assert output and all(line.startswith(failure) for line in output)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 10


def test_set_new_school_prints_the_reply(fake_redis, capsys):
    lesson = importlib.import_module("1_redis_op")

    lesson.set_new_school(fake_redis, "HolbertonSanFrancisco", "100")
    lesson.display_school_value(fake_redis, "HolbertonSanFrancisco")

    assert capsys.readouterr().out == "Reply: OK\n100\n"


def test_create_hash_prints_one_reply_per_field(fake_redis, capsys):
    lesson = importlib.import_module("4_redis_advanced_op")

    lesson.create_hash(fake_redis, "HolbertonSchools", {"Paris": "2", "Cali": "40"})
    lesson.create_hash(fake_redis, "HolbertonSchools", {"Paris": "3"})

    assert capsys.readouterr().out == "Reply: 1\nReply: 1\nReply: 0\n"
    assert fake_redis.hgetall("HolbertonSchools") == {"Paris": "3", "Cali": "40"}


def test_a_redis_error_mid_lesson_is_one_line_on_stderr(redis_url, real_redis):
    real_redis.set("HolbertonSchools", "not a hash")

    result = run_script("4_redis_advanced_op.py", redis_url)

    assert lines(result.stdout) == [expected.CONNECTED]
    assert result.stderr.startswith("Redis error: WRONGTYPE")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
