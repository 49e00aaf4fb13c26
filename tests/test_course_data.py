"""The course's data lives once, in course/expected.py: the lessons use the same keys and values.

``make reset`` and the checker read expected.py and never import a numbered lesson; these
tests are what keeps the two in step.
"""

from __future__ import annotations

import ast
import importlib
import json

from course import expected

import fakeredis
import pytest

from checker.lessons import ROOT

stock = importlib.import_module("9_stock")
seat = importlib.import_module("100_seat")
advanced_op = importlib.import_module("4_redis_advanced_op")


def test_the_stock_api_sells_the_course_products_under_the_course_keys():
    assert stock.LIST_PRODUCTS == expected.PRODUCTS
    assert json.dumps(expected.PRODUCTS, separators=(",", ":")) == expected.PRODUCTS_BODY
    for product in expected.PRODUCTS:
        assert stock.stock_key(product["itemId"]) == expected.stock_key(product["itemId"])


def test_the_seat_api_keeps_its_seats_under_the_course_keys():
    assert seat.AVAILABLE_SEATS_KEY == expected.AVAILABLE_SEATS_KEY
    assert seat.RESERVATION_ENABLED_KEY == expected.RESERVATION_ENABLED_KEY
    assert seat.ENABLED == expected.RESERVATION_ENABLED
    assert seat.INITIAL_SEATS == expected.INITIAL_SEATS
    assert seat.QUEUE_NAME == expected.SEAT_QUEUE


@pytest.mark.parametrize(
    ("lesson", "queue"),
    [
        ("6_job_creator", expected.TASK6_QUEUE),
        ("6_job_processor", expected.TASK6_QUEUE),
        ("7_job_creator", expected.TASK7_QUEUE),
        ("7_job_processor", expected.TASK7_QUEUE),
        ("8_job", expected.TASK8_QUEUE),
    ],
)
def test_the_job_lessons_use_the_course_queues(lesson, queue):
    assert queue == importlib.import_module(lesson).QUEUE_NAME


def test_task_4_writes_the_course_hash(monkeypatch, capsys):
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    fake_redis = type("FakeRedisFromUrl", (), {"from_url": staticmethod(lambda url, **options: client)})
    monkeypatch.setattr(advanced_op, "Redis", fake_redis)

    advanced_op.main()

    assert client.hgetall(expected.SCHOOLS_HASH_KEY) == advanced_op.HOLBERTON_SCHOOLS
    assert capsys.readouterr().out.splitlines() == expected.REDIS_ADVANCED_OP


def imported_names(tree: ast.AST) -> list[str]:
    """Every module a piece of code imports, by statement or by importlib.import_module("...")."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(node.args[0].value)
    return names


COURSE_MODULES = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "course").rglob("*.py"))
LESSONS = sorted(path.name for path in ROOT.glob("[0-9]*.py"))
# Issue 18: a lesson shows the libraries it teaches, over a handful of the core's helpers.
MOST_NAMES_A_LESSON_IMPORTS = 6


@pytest.mark.parametrize("module", COURSE_MODULES)
def test_the_course_package_never_imports_a_lesson_or_the_checker(module):
    """The lessons and the course run stand over the core: no import runs back up."""
    tree = ast.parse((ROOT / module).read_text())

    assert [name for name in imported_names(tree) if name[:1].isdigit() or name.startswith("checker")] == []


@pytest.mark.parametrize("lesson", LESSONS)
def test_a_lesson_imports_a_handful_of_names_from_the_core(lesson):
    tree = ast.parse((ROOT / lesson).read_text())
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "course"
        for alias in node.names
    ]

    assert 0 < len(names) <= MOST_NAMES_A_LESSON_IMPORTS, names
