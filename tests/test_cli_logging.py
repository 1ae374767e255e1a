"""The CLI's log lines (kfkit.cli.main's root handler): the text logging.Formatter makes, each second's
time of day spelled once (`kfkit serve` logs a line per request)."""

import logging
import random
import time

import pytest

from kfkit import cli


def records(times):
    made = []
    for created in times:
        record = logging.LogRecord("kfkit.access", logging.INFO, "f.py", 1, "line %d", (len(made),), None)
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0  # as LogRecord sets them from its clock
        made.append(record)
    return made


def moments():
    rng = random.Random(3)
    start = 1796619317.0
    steady = [start + i * 0.0004 for i in range(6000)]  # 2.4 s of one line each 0.4 ms: seconds repeat
    edges = [start + k + d for k in range(5) for d in (-1e-6, 0.0, 0.0009, 0.999, 0.9999999)]
    spread = [rng.uniform(0, 4e9) for _ in range(2000)]
    back = [start + 2.5, start + 0.5, start + 2.5, start + 0.5]  # the clock going back and forth
    return steady + edges + spread + back


@pytest.fixture(autouse=True)
def away_from_utc(monkeypatch):
    """A zone half an hour off UTC, so local and UTC times differ here (this machine runs in UTC)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("setup", [
    lambda f: None,
    lambda f: setattr(f, "converter", time.gmtime),
    lambda f: setattr(f, "default_msec_format", None),
    lambda f: setattr(f, "default_time_format", "%H:%M:%S"),
], ids=["localtime", "gmtime", "no-msecs", "own-time-format"])
def test_a_line_is_the_text_logging_formatter_makes(setup):
    ours, theirs = cli.SecondFormatter(cli.LOG_FORMAT), logging.Formatter(cli.LOG_FORMAT)
    setup(ours), setup(theirs)

    assert [ours.format(r) for r in records(moments())] == [theirs.format(r) for r in records(moments())]


def test_a_format_of_its_own_for_the_time_is_spelled_as_logging_spells_it():
    ours, theirs = (kind(cli.LOG_FORMAT, datefmt="%d/%m %H:%M:%S") for kind in (cli.SecondFormatter, logging.Formatter))

    assert [ours.format(r) for r in records(moments()[:500])] == [theirs.format(r) for r in records(moments()[:500])]


def test_the_cli_logs_through_the_second_formatter(monkeypatch):
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(cli, "build_parser", lambda: _Parser())

    cli.main([])

    [handler] = logging.root.handlers
    assert type(handler.formatter) is cli.SecondFormatter and handler.formatter._fmt == cli.LOG_FORMAT


class _Parser:
    def parse_args(self, argv):
        return type("Args", (), {"verbose": False, "func": staticmethod(lambda args: 0)})()


def test_a_converter_changed_between_lines_of_one_second_takes_effect_at_once():
    ours, theirs = cli.SecondFormatter(cli.LOG_FORMAT), logging.Formatter(cli.LOG_FORMAT)
    first, second = records([1796619317.25, 1796619317.5])

    before = ours.format(first), theirs.format(first)
    ours.converter = theirs.converter = time.gmtime
    after = ours.format(second), theirs.format(second)

    assert before[0] == before[1] and after[0] == after[1] and before[0][:19] != after[0][:19]
