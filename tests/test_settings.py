"""Settings and command lines as a learner types them: ``--help``, typos, a Python without the project.

Every numbered script (and the dashboard) answers ``--help`` with a usage line and touches
nothing: the Redis it would use sees no command and no key change. An unknown argument is a
usage error, status 2. A malformed ``REDIS_URL``, ``HOST`` or ``PORT`` is one line on stderr
naming the setting, status 2, and nothing started.
"""

from __future__ import annotations

import subprocess
import sys

from course import hosts, settings

import pytest
import redis

from checker.lessons import ROOT, script_env

# Every program a learner runs, as its command line after ``python``.
SCRIPTS = {
    "0_redis_client.py": ["0_redis_client.py"],
    "1_redis_op.py": ["1_redis_op.py"],
    "2_redis_op_async.py": ["2_redis_op_async.py"],
    "4_redis_advanced_op.py": ["4_redis_advanced_op.py"],
    "5_publisher.py": ["5_publisher.py"],
    "5_subscriber.py": ["5_subscriber.py"],
    "6_job_creator.py": ["6_job_creator.py"],
    "6_job_processor.py": ["6_job_processor.py"],
    "7_job_creator.py": ["7_job_creator.py"],
    "7_job_processor.py": ["7_job_processor.py"],
    "8_job.py": ["8_job.py"],
    "8_job_main.py": ["8_job_main.py"],
    "9_stock.py": ["9_stock.py"],
    "100_seat.py": ["100_seat.py"],
    "dashboard": ["-m", "course.dashboard"],
}
SERVERS = ["9_stock.py", "100_seat.py", "dashboard"]
# 8_job.py is a module of functions: run as a script, it only answers --help.
USING_REDIS = [name for name in SCRIPTS if name != "8_job.py"]
# Bounds for a broken run, not expectations of speed.
EXIT_TIMEOUT_SECONDS = 30

BAD_REDIS_URLS = {
    "garbage": "must start with redis://, rediss:// or unix://",
    "http://127.0.0.1:6379/0": "not http://",
    "127.0.0.1:6379": "must start with redis://",
    "redis://127.0.0.1:99999/0": "not a TCP port number",
    "redis://127.0.0.1:port/0": "not a TCP port number",
    "redis://127.0.0.1:6379/zero": "must end with a database number",
    "redis://[::1:6379/0": "not a URL",
}
# Options redis-py takes from a URL without complaint, and then fails on with a traceback.
BAD_URL_OPTIONS = {
    "redis://127.0.0.1:6379/0?socket_timout=2": "an option redis-py does not know: socket_timout",
    "redis://127.0.0.1:6379/0?socket_timeout=soon": "value for socket_timeout that is not valid: 'soon'",
    "unix:///run/redis.sock?db=one": "value for db that is not valid",
    "redis://127.0.0.1:6379/0?ssl_cert_reqs=none": r"ssl_cert_reqs, an option of rediss:// \(TLS\) URLs only",
}


def run_program(name: str, *args: str, url: str, timeout: float = EXIT_TIMEOUT_SECONDS, **env: str):
    return subprocess.run(
        [sys.executable, *SCRIPTS[name], *args],
        cwd=ROOT,
        env=script_env(url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def commands_processed(client: redis.Redis) -> int:
    """The server's command count; this INFO itself is counted only after it answers."""
    return client.info("stats")["total_commands_processed"]


# The settings, one by one -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:p%40ss@localhost:6380/2",
        "rediss://user:secret@redis.example.com:6380/0",
        "redis://127.0.0.1",
        "unix:///run/redis.sock?db=1",
        "redis://127.0.0.1:6379/0?socket_timeout=2.5&client_name=course&protocol=3",
        "rediss://redis.example.com:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
    ],
)
def test_redis_urls_that_redis_py_reads_are_accepted(url):
    settings.check_redis_url(url)
    # redis-py makes a connection of it (a connection object only: nothing is sent).
    redis.Redis.from_url(url).connection_pool.make_connection()


@pytest.mark.parametrize("url, complaint", BAD_URL_OPTIONS.items())
def test_a_url_option_redis_py_would_fail_on_is_named(url, complaint):
    with pytest.raises(settings.SettingError, match=complaint):
        settings.check_redis_url(url)
    # What a learner got before: a traceback, from the URL or at the first command.
    with pytest.raises((TypeError, ValueError)):
        redis.Redis.from_url(url).connection_pool.make_connection()


@pytest.mark.parametrize("url, complaint", BAD_REDIS_URLS.items())
def test_a_malformed_redis_url_is_named_and_explained(url, complaint):
    with pytest.raises(settings.SettingError, match=complaint) as refused:
        settings.check_redis_url(url)
    assert str(refused.value).startswith("REDIS_URL ")


def test_a_malformed_redis_url_never_shows_its_password():
    with pytest.raises(settings.SettingError) as refused:
        settings.check_redis_url("redis://:hunter2@127.0.0.1:70000/0")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "１２", "80 "])
def test_a_bad_port_is_named(monkeypatch, value):
    monkeypatch.setenv("DASHBOARD_PORT", value)
    with pytest.raises(settings.SettingError, match=f"DASHBOARD_PORT must be a TCP port number .*{value!r}"):
        hosts.port_from_env("DASHBOARD_PORT", 9181)


def test_the_default_port_is_the_one_given(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    assert hosts.port_from_env("PORT", 1245) == 1245


@pytest.mark.parametrize("host", ["nonexistent.invalid", "exa mple", "a" * 300])
def test_a_host_that_does_not_resolve_is_named(monkeypatch, host):
    monkeypatch.setenv("HOST", host)
    with pytest.raises(settings.SettingError, match="^HOST .* is not an address to listen on: "):
        hosts.host_from_env()


# The programs, as a learner runs them ------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_prints_a_usage_line_and_touches_nothing(name, redis_url, real_redis):
    real_redis.set("learner's key", "kept")
    keys_before = real_redis.keys("*")
    before = commands_processed(real_redis)
    result = run_program(name, "--help", url=redis_url)
    after = commands_processed(real_redis)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
    assert result.stderr == ""
    assert after - before == 1, "the program sent commands to Redis"
    assert real_redis.keys("*") == keys_before


@pytest.mark.parametrize("name", SCRIPTS)
def test_an_unknown_argument_is_a_usage_error(name, redis_url, real_redis):
    before = commands_processed(real_redis)
    result = run_program(name, "--colour", url=redis_url)
    assert result.returncode == 2
    assert "unrecognized arguments: --colour" in result.stderr
    assert "Traceback" not in result.stderr
    assert commands_processed(real_redis) - before == 1


@pytest.mark.parametrize("url", [*BAD_REDIS_URLS, next(iter(BAD_URL_OPTIONS))])
@pytest.mark.parametrize("name", USING_REDIS)
def test_a_malformed_redis_url_is_one_line_and_status_2(name, url):
    result = run_program(name, url=url, PORT="1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("REDIS_URL ")


BAD_SERVER_SETTINGS = {
    "HOST": ("nonexistent.invalid", "HOST 'nonexistent.invalid' is not an address to listen on"),
    "PORT": ("http", "PORT must be a TCP port number (1-65535), not 'http'"),
}


@pytest.mark.parametrize("setting", BAD_SERVER_SETTINGS)
@pytest.mark.parametrize("name", SERVERS)
def test_a_malformed_server_setting_is_one_line_and_status_2(name, setting, redis_url, real_redis):
    value, message = BAD_SERVER_SETTINGS[setting]
    if name == "dashboard" and setting == "PORT":
        setting, message = "DASHBOARD_PORT", message.replace("PORT", "DASHBOARD_PORT")
    result = run_program(name, url=redis_url, **{setting: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(message)
    # Nothing started: the seat API did not set up its seats before finding the setting bad.
    assert real_redis.keys("*") == []


def test_a_python_without_the_dependencies_says_how_to_get_them(redis_url):
    # -S: no site-packages, as for a Python where the project was never installed.
    result = subprocess.run(
        [sys.executable, "-S", "1_redis_op.py"],
        cwd=ROOT,
        env=script_env(redis_url),
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_SECONDS,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not installed" in result.stderr and "make install" in result.stderr
