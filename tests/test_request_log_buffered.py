"""The request log off the request path (kfkit.serving.server.RequestLog, buffered) and the fast paths
the server takes for plainly valid requests: each must give exactly what the slow path gives."""

import errno
import json
import math
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

from kfkit.serving import http_app, request_logs, server
from kfkit.serving.model_io import RequestError, _rows_fast, instances_to_arrays
from kfkit.serving.server import Deployed, RequestLog
from tests.serve_process import kfkit_serve

PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}
PREDICTION = {"classes": "Gentoo", "scores": [1e-05, 0.25, 0.74999], "class_ids": 2}
DEPLOYED = Deployed("d1", "penguins", "3", 100, None)
NEVER = 3600.0  # a flush interval no test waits out: the tests flush, close or fill the buffer themselves


def lines(directory):
    return [line for path in sorted(directory.rglob("*.jsonl")) for line in path.read_bytes().splitlines()]


def buffered_log(tmp_path, **kwargs):
    return RequestLog(tmp_path / "logs", "e", buffered=True, flush_interval_s=NEVER, **kwargs)


# --- the record on disk ------------------------------------------------------------------------------------

def test_a_record_line_is_the_bytes_json_dumps_made_before():
    request_log = RequestLog(None, "e")
    record = {"timestamp": 1700000000.25, "endpoint": "e", "deployed_model_id": "d1", "model": "penguins",
              "model_version": "3", "status": 200, "latency_ms": round(1.2345, 3), "instances": [PENGUIN, dict(PENGUIN, sex="é")],
              "predictions": [PREDICTION, PREDICTION]}

    line = request_log.line(DEPLOYED, record["instances"], record["predictions"], now=record["timestamp"],
                            latency_ms=1.2345)

    assert line == (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")


@pytest.mark.parametrize("now, latency_ms", [(1700000000.25, 1.2345), (1e22, 0.0), (1.5, 5e-324), (1e9 + 0.1, 123456.78951),
                                             (1796534146.597927, 1e300)])
def test_a_record_line_with_the_texts_spliced_in_is_the_bytes_json_dumps_makes(now, latency_ms):
    request_log = RequestLog(None, "e\u00e9\"")
    deployed = Deployed("d\u00e9", "pen\"guins", "3\n", 100, None)
    instances, predictions = [PENGUIN, dict(PENGUIN, sex="\u00e9")], [PREDICTION, PREDICTION]
    record = {"timestamp": now, "endpoint": "e\u00e9\"", "deployed_model_id": "d\u00e9", "model": "pen\"guins",
              "model_version": "3\n", "status": 200, "latency_ms": round(latency_ms, 3), "instances": instances,
              "predictions": predictions}
    texts = [json.dumps(v, separators=(",", ":")) for v in (instances, predictions)]

    lines = [request_log.line(deployed, instances, predictions, now=now, latency_ms=latency_ms, instances_json=texts[0],
                              predictions_json=texts[1]) for _ in range(2)]

    assert lines[0] == lines[1] == (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")


def test_a_failed_request_line_carries_its_status_and_error_and_no_payload():
    line = RequestLog(None, "e").line(DEPLOYED, None, None, now=5.0, status=400, error="x" * 900)

    record = json.loads(line)
    assert record["status"] == 400 and record["error"] == "x" * 500 and "instances" not in record


def test_the_instances_text_a_client_sent_is_kept_and_reads_back_as_the_same_instances():
    raw = b'{"parameters": {},\r\n "instances": [ {"island": "Biscoe", "culmen_length_mm": 47.50,\n "x": "\\u00e9"} ]}'
    body, text, _ = http_app.parse_predict_request(raw)

    line = RequestLog(None, "e").line(DEPLOYED, body["instances"], [PREDICTION], now=5.0, instances_json=text)

    assert b"\n" not in line[:-1] and line.isascii()
    assert json.loads(line)["instances"] == json.loads(raw)["instances"] == body["instances"]


@pytest.mark.parametrize("raw", [
    b'{"instances": [1, 2]}', b' {"instances" : [ ] } ', b'{}', b'{"a": 1, "instances": [{"k": "v"}], "a": 2}',
    '{"instances": ["é"]}'.encode(), b'{"instances": NaN}', b'{"instances": [1e400]}', b'{"a": 1,}', b'[1]',
    b'{"a": 1} x', b'{"a" 1}', b'', b'{', b'{"instances": [' + b'[' * 5000 + b']' * 5000 + b']}', b'\xff',
    b'"just a string"', b'{"instances": "\\ud800"}',
])
def test_parsing_for_the_log_answers_every_body_as_parse_body_does(raw):
    def outcome(parse):
        try:
            return "ok", parse(raw)
        except http_app.BadRequest as exc:
            return exc.status, exc.message

    fast = outcome(lambda r: http_app.parse_predict_request(r)[0])

    assert fast == outcome(http_app.parse_body)


# --- buffered writing ------------------------------------------------------------------------------------------

def test_submitted_records_wait_in_the_buffer_and_a_flush_writes_them_all_in_order(tmp_path):
    request_log = buffered_log(tmp_path)
    for i in range(50):
        request_log.submit(DEPLOYED, [dict(PENGUIN, n=i)], [PREDICTION], latency_ms=1.0)
    before = lines(tmp_path / "logs") if (tmp_path / "logs").exists() else []

    request_log.flush()

    assert before == []
    assert [json.loads(line)["instances"][0]["n"] for line in lines(tmp_path / "logs")] == list(range(50))
    request_log.close()


def test_a_flush_returns_once_the_batch_another_flush_took_is_written(tmp_path):
    request_log = buffered_log(tmp_path)
    for i in range(5):
        request_log.submit(DEPLOYED, [dict(PENGUIN, n=i)], [PREDICTION], latency_ms=1.0)
    writing, release, write = threading.Event(), threading.Event(), request_log._write_lines

    def slow_write(entries):  # the writer thread's flush, holding its batch while the disk is slow
        writing.set()
        release.wait(30)
        write(entries)

    request_log._write_lines = slow_write
    first = threading.Thread(target=request_log.flush)
    first.start()
    writing.wait(30)
    request_log._write_lines = write
    second = threading.Thread(target=request_log.flush)  # a reader's flush, before it reads the files

    second.start()
    second.join(0.5)
    waited = second.is_alive()
    release.set()
    second.join(30)
    first.join(30)

    assert waited and len(lines(tmp_path / "logs")) == 5
    request_log.close()


def test_close_writes_every_buffered_record(tmp_path):
    request_log = buffered_log(tmp_path)
    for i in range(20):
        request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])

    request_log.close()

    assert len(lines(tmp_path / "logs")) == 20


def test_a_record_submitted_after_close_is_written_at_once(tmp_path):
    request_log = buffered_log(tmp_path)
    request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])
    request_log.close()

    request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])

    assert len(lines(tmp_path / "logs")) == 2 and request_log.written_at_cap == 0
    request_log.close()


def test_at_the_byte_cap_the_request_writes_the_buffer_and_its_own_record(tmp_path):
    one = len(RequestLog(None, "e").line(DEPLOYED, [PENGUIN], [PREDICTION], now=time.time()))
    request_log = buffered_log(tmp_path, max_buffer_bytes=3 * one + 10)
    for _ in range(3):
        request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])

    request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])  # the fourth does not fit

    assert len(lines(tmp_path / "logs")) == 4 and request_log.written_at_cap == 1
    assert request_log._pending_bytes == 0
    request_log.close()


def test_an_answered_record_buffered_as_its_parts_is_written_as_the_line_a_request_would_make(tmp_path, monkeypatch):
    request_log = buffered_log(tmp_path)
    texts = [json.dumps(v, separators=(",", ":")) for v in ([PENGUIN], [PREDICTION])]
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)

    request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION], latency_ms=1.5, instances_json=texts[0],
                       predictions_json=texts[1])
    buffered = request_log._pending[0][1]
    request_log.close()

    assert type(buffered) is tuple  # made into its line by the writer, not by the request
    assert lines(tmp_path / "logs") == [request_log.line(DEPLOYED, [PENGUIN], [PREDICTION], now=1700000000.25,
                                                         latency_ms=1.5)[:-1]]


def test_numbers_spelled_together_are_spelled_as_json_spells_each():
    # json spells a float with float.__repr__ (CPython's Lib/json/encoder.py, floatstr): the expected
    # values come from json.dumps itself
    rng = random.Random(11)
    at_least = [rng.uniform(1, 10) * 10 ** rng.randint(-4, 300) * rng.choice((1, -1)) for _ in range(20000)] + [
        1e-4, -1e-4, 1e16, 1e22, 1.7976931348623157e308, 9999999999999998.0, 1796534146.597927, 0.001, 0.1 + 0.2]
    below = [1e-5, 0.99999e-4, 5e-324, 1.6996526076898652e-05, 0.0, -0.0]

    for numbers in (at_least, at_least[:5] + below[:1], below, [], [0.5]):
        assert server._spelled(numbers) == [json.dumps(x).encode() for x in numbers]


@pytest.mark.parametrize("stamps, latencies", [
    ([1796534146.597927, 1796534146.6, 1796534147.0], [1.2345, 0.0, 123456.78951]),  # spelled together
    ([1796534146.597927, 1.5, 1e9 + 0.1], [1e-5, 5e-324, 1e300]),                    # every way there is
    ([1796534146.25, 1796534146.5], [0.0004, 0.00051]),                              # latencies rounding to 0
    ([1796534146.25, 1796534146.5, 1796534146.75], [2, 0.5, True]),                  # not floats: line()'s way
    ([1796534146.25, 1796534146.5, 1796534146.75], [math.nan, 0.5, math.inf]),       # not JSON: not written
])
def test_a_batch_of_answered_records_is_written_as_json_dumps_writes_each(tmp_path, stamps, latencies):
    request_log = buffered_log(tmp_path)
    texts = [json.dumps(v, separators=(",", ":")).encode() for v in ([PENGUIN], [PREDICTION])]
    for stamp, latency_ms in zip(stamps, latencies):
        request_log._pending.append((stamp, (DEPLOYED, latency_ms, *texts, 700)))

    request_log.close()

    expected = sorted(json.dumps({"timestamp": stamp, "endpoint": "e", "deployed_model_id": "d1", "model": "penguins",
                                  "model_version": "3", "status": 200, "latency_ms": round(latency_ms, 3),
                                  "instances": [PENGUIN], "predictions": [PREDICTION]},
                                 separators=(",", ":"), allow_nan=False).encode()
                      for stamp, latency_ms in zip(stamps, latencies) if math.isfinite(latency_ms))
    assert sorted(lines(tmp_path / "logs")) == expected


def test_records_buffered_as_parts_count_their_texts_against_the_byte_cap(tmp_path):
    texts = [json.dumps(v, separators=(",", ":")) for v in ([PENGUIN] * 20, [PREDICTION] * 20)]
    one = len(texts[0]) + len(texts[1]) + 512
    request_log = buffered_log(tmp_path, max_buffer_bytes=2 * one + 10)
    for _ in range(3):  # the third does not fit
        request_log.submit(DEPLOYED, [PENGUIN] * 20, [PREDICTION] * 20, latency_ms=1.0, instances_json=texts[0],
                           predictions_json=texts[1])

    assert request_log.written_at_cap == 1 and request_log._pending_bytes == 0
    assert len(lines(tmp_path / "logs")) == 3 and all(json.loads(line)["instances"] == [PENGUIN] * 20
                                                      for line in lines(tmp_path / "logs"))
    request_log.close()


def test_the_background_writer_writes_without_a_flush_call(tmp_path):
    request_log = RequestLog(tmp_path / "logs", "e", buffered=True, flush_interval_s=0.01)
    request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])

    deadline = time.monotonic() + 30
    while not (tmp_path / "logs").exists() or not lines(tmp_path / "logs"):
        assert time.monotonic() < deadline, "the writer thread wrote nothing in 30 s"
        time.sleep(0.01)  # polling for the writer thread's batch, bounded

    assert len(lines(tmp_path / "logs")) == 1
    request_log.close()


def test_a_failed_write_keeps_the_records_for_the_next_flush(tmp_path, monkeypatch, caplog):
    request_log = buffered_log(tmp_path)
    for _ in range(5):
        request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, data: (_ for _ in ()).throw(OSError(28, "No space left on device")))

    request_log.flush()
    monkeypatch.setattr(os, "writev", real_writev)
    request_log.flush()

    assert len(lines(tmp_path / "logs")) == 5 and request_log.lost == 0
    assert "could not write 5 records" in caplog.text
    request_log.close()


def test_a_short_write_counts_the_records_it_cut_as_lost_and_says_so(tmp_path, monkeypatch, caplog):
    request_log = buffered_log(tmp_path)
    for _ in range(4):
        request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION])
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, data: real_writev(fd, [bytes(data[0])[:10]]))

    request_log.flush()

    assert request_log.lost == 4 and "4 records lost" in caplog.text
    monkeypatch.setattr(os, "writev", real_writev)
    request_log.close()


def test_a_write_failing_after_some_whole_lines_loses_only_the_rest_and_never_writes_a_line_twice(tmp_path, monkeypatch,
                                                                                                   caplog):
    from kfkit.serving import server

    monkeypatch.setattr(server, "WRITEV_PARTS", 2)  # two one-piece lines a call
    request_log = buffered_log(tmp_path)
    for i in range(5):
        request_log.submit(DEPLOYED, [dict(PENGUIN, n=i)], [PREDICTION])
    real_writev, calls = os.writev, []

    def second_call_fails(fd, data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_writev(fd, data)

    monkeypatch.setattr(os, "writev", second_call_fails)
    request_log.flush()
    monkeypatch.setattr(os, "writev", real_writev)
    request_log.flush()

    assert calls == [2, 2] and request_log.lost == 3 and "3 records lost" in caplog.text
    assert [json.loads(line)["instances"][0]["n"] for line in lines(tmp_path / "logs")] == [0, 1]
    request_log.close()


def test_records_kept_as_parts_are_written_as_the_lines_line_makes_over_many_writev_calls(tmp_path, monkeypatch):
    from kfkit.serving import server

    monkeypatch.setattr(server, "WRITEV_PARTS", 7)  # a record is five pieces: one record a call
    request_log = buffered_log(tmp_path)
    texts = [(json.dumps([dict(PENGUIN, n=i)]).encode(), json.dumps([PREDICTION]).encode()) for i in range(4)]
    for instances, predictions in texts:
        request_log.submit(DEPLOYED, None, None, latency_ms=1.25, instances_json=instances, predictions_json=predictions)
    stamps = [stamp for stamp, _ in request_log._pending]

    request_log.flush()

    assert lines(tmp_path / "logs") == [
        request_log.line(DEPLOYED, None, None, now=stamp, latency_ms=1.25, instances_json=instances,
                         predictions_json=predictions)[:-1] for stamp, (instances, predictions) in zip(stamps, texts)]
    request_log.close()


def test_batches_rotate_files_by_size_as_line_by_line_writing_does(tmp_path):
    request_log = buffered_log(tmp_path, max_file_bytes=2000, max_total_bytes=10 ** 9)
    for i in range(60):
        request_log.submit(DEPLOYED, [{"x": i}], [{"classes": "a"}])

    request_log.close()

    files = sorted((tmp_path / "logs").glob("*.jsonl"))
    assert len(files) >= 2 and all(p.stat().st_size <= 2000 + 200 for p in files)
    assert len(lines(tmp_path / "logs")) == 60


def test_records_of_one_batch_go_to_the_file_of_their_own_day(tmp_path):
    request_log = buffered_log(tmp_path)
    for stamp in (86400 * 20000 - 1.0, 86400 * 20000 + 1.0):
        request_log._pending.append((stamp, request_log.line(DEPLOYED, [PENGUIN], [PREDICTION], now=stamp)))

    request_log.close()

    assert sorted(p.name for p in (tmp_path / "logs").glob("*.jsonl")) == ["2024-10-03.jsonl", "2024-10-04.jsonl"]


def reserving(monkeypatch, answer=None):
    """server._reserve_blocks, its calls recorded: the real fallocate, or one answering `answer` (an errno)."""
    calls, real = [], server._reserve_blocks

    def reserve(fd, offset, length):
        calls.append((os.fstat(fd).st_size, offset, length))
        return real(fd, offset, length) if answer is None else answer

    monkeypatch.setattr(server, "_reserve_blocks", reserve)
    return calls


@pytest.mark.skipif(server._reserve_blocks is None, reason="no fallocate in this C library (not Linux)")
def test_blocks_reserved_ahead_of_a_log_file_keep_its_size_and_bytes_and_are_taken_once_per_reserve(
        tmp_path, monkeypatch):
    calls = reserving(monkeypatch)
    request_log = buffered_log(tmp_path)
    expected = []
    for batch in range(3):
        for i in range(20):
            request_log.submit(DEPLOYED, [dict(PENGUIN, n=i)], [PREDICTION], latency_ms=1.0)
        request_log.flush()
        expected += [batch] * 20

    (path,) = (tmp_path / "logs").glob("*.jsonl")
    content = path.read_bytes()
    if not request_log._reserve:
        pytest.skip(f"the filesystem under {tmp_path} reserves no blocks")
    assert os.stat(path).st_size == len(content) and content.endswith(b"\n")
    assert len(content.splitlines()) == 60 and all(json.loads(line)["status"] == 200 for line in content.splitlines())
    assert calls == [(0, 0, server.LOG_RESERVE_BYTES)]  # one reserve covered all three flushes
    assert os.stat(path).st_blocks * 512 >= server.LOG_RESERVE_BYTES > len(content)
    request_log.close()


def test_reserving_never_goes_past_the_file_size_limit_and_starts_again_in_each_new_file(tmp_path, monkeypatch):
    calls = reserving(monkeypatch, answer=0)
    request_log = buffered_log(tmp_path, max_file_bytes=3000, max_total_bytes=10 ** 9)
    for i in range(40):
        request_log.submit(DEPLOYED, [{"x": i}], [{"classes": "a"}])
        if i % 5 == 4:
            request_log.flush()

    request_log.close()

    # in the order written: day, day.1, day.2, ...
    files = sorted((tmp_path / "logs").glob("*.jsonl"), key=lambda p: int(p.suffixes[0][1:]) if len(p.suffixes) > 1 else 0)
    starts = [i for i, (_, offset, _) in enumerate(calls) if offset == 0]
    assert len(files) >= 2 and len(lines(tmp_path / "logs")) == 40
    assert len(starts) == len(files)  # each file reserved from its start
    for path, first, last in zip(files, starts, starts[1:] + [len(calls)]):
        # past the limit only as far as the file itself goes (its last line passes it, as unbuffered writing does)
        assert all(size == offset and offset + length <= max(3000, path.stat().st_size)
                   for size, offset, length in calls[first:last])


@pytest.mark.parametrize("refusal, tried_again", [(errno.EOPNOTSUPP, False), (errno.ENOSPC, True)])
def test_a_refused_reserve_still_writes_every_record_and_only_a_full_disk_is_tried_again(
        tmp_path, monkeypatch, refusal, tried_again):
    calls = reserving(monkeypatch, answer=refusal)
    request_log = buffered_log(tmp_path)
    for batch in range(3):
        request_log.submit(DEPLOYED, [PENGUIN], [PREDICTION], latency_ms=1.0)
        request_log.flush()

    request_log.close()

    assert len(lines(tmp_path / "logs")) == 3
    assert len(calls) == (3 if tried_again else 1)
    assert request_log._reserve is tried_again


def test_a_reader_of_a_window_that_just_ended_waits_out_the_flush_bound(tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(request_logs.time, "sleep", waits.append)
    now = time.time()

    list(request_logs.records(tmp_path, now - 60, now + 60))
    list(request_logs.records(tmp_path, now - 60, now - 30))

    assert len(waits) == 1 and 0 < waits[0] <= request_logs.SETTLE_S


def test_records_of_requests_answered_before_sigterm_are_all_on_disk_after(penguin_model, tmp_path):
    import http.client

    with kfkit_serve(penguin_model, tmp_path) as (process, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(200):
            conn.request("POST", "/predict", body=json.dumps({"instances": [dict(PENGUIN, body_mass_g=float(i))]}),
                         headers={"Content-Type": "application/json"})
            assert conn.getresponse().read() and True

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -15)

        written = [json.loads(line) for line in lines(tmp_path / "request_logs")]
        assert sorted(r["instances"][0]["body_mass_g"] for r in written) == [float(i) for i in range(200)]


# --- fast paths that must answer as the slow ones do ----------------------------------------------------------

def random_value(rnd, depth=0):
    choice = rnd.randrange(12 if depth < 3 else 8)
    return [lambda: None, lambda: rnd.choice([True, False]), lambda: rnd.randint(-10, 10),
            lambda: rnd.choice([2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1]),
            lambda: rnd.choice([0.5, -0.0, 1e308, math.inf, -math.inf, math.nan]),
            lambda: rnd.choice(["", "a", "é", "\ud800", "\u2028"]), lambda: "x",
            lambda: rnd.choice([(1,), np.float32(1.5), b"bytes"]),
            lambda: [random_value(rnd, depth + 1) for _ in range(rnd.randrange(3))],
            lambda: {rnd.choice(["k", "é", "\udc00"]): random_value(rnd, depth + 1) for _ in range(rnd.randrange(3))},
            lambda: [random_value(rnd, depth + 1)], lambda: {"f": random_value(rnd, depth + 1)}][choice]()


def test_checking_values_refuses_exactly_what_the_naming_walk_refuses_and_names_the_same_field():
    rnd = random.Random(31)
    deep = [[]]
    for _ in range(40):
        deep = [deep]
    for value in [random_value(rnd) for _ in range(3000)] + [deep, [[[]]]]:
        def outcome(check):
            try:
                check(value, "instances")
            except http_app.BadRequest as exc:
                return exc.message
            return None

        assert outcome(http_app.check_values) == outcome(http_app._check_named), repr(value)[:200]


SIGNATURE = {"island": "string", "culmen_length_mm": "float32", "count": "int64"}


@pytest.mark.parametrize("instances", [
    [{"island": "Biscoe", "culmen_length_mm": 47.5, "count": 3}] * 4,
    [{"island": "Biscoe", "culmen_length_mm": 47, "count": 3}, {"island": "Dream", "culmen_length_mm": -1.5, "count": 0}],
    [{"island": None, "culmen_length_mm": None, "count": None}],
    [{"island": "a", "culmen_length_mm": 1.0, "count": 3.0}],
    [{"island": "a", "culmen_length_mm": 1.0, "count": True}],
    [{"island": "a", "culmen_length_mm": 1e39, "count": 1}],
    [{"island": "a", "culmen_length_mm": math.nan, "count": 1}],
    [{"island": "a", "culmen_length_mm": -math.inf, "count": 1}],
    [{"island": "a", "culmen_length_mm": 3.4028234663852886e38, "count": 1}],  # float32's largest
    [{"island": "a", "culmen_length_mm": -3.4028235e38, "count": 1}],  # past it by less than half a step: both refuse
    [{"island": "a", "culmen_length_mm": 0.1, "count": 1}, {"island": "b", "culmen_length_mm": 1 / 3, "count": 2}],
    [{"island": "a", "culmen_length_mm": 0.1 * i, "count": i} for i in range(17)],  # past SMALL_BATCH: numpy
    [{"island": "a", "culmen_length_mm": 10 ** 400, "count": 1}],
    [{"island": "a", "culmen_length_mm": 1.0, "count": 2 ** 64}],
    [{"island": "a", "culmen_length_mm": 1.0}],
    [{"island": "a", "culmen_length_mm": 1.0, "count": 1, "extra": 2}],
    [{"island": "a", "culmen_length_mm": 1.0, "other": 1}],
    [{"island": 5, "culmen_length_mm": 1.0, "count": 1}],
    [["not", "an", "object"]],
])
def test_plain_instances_make_the_arrays_the_per_value_walk_makes(instances, monkeypatch):
    from kfkit.serving import model_io

    def outcome():
        try:
            return {k: (v.dtype, repr(v.tolist())) for k, v in instances_to_arrays(instances, SIGNATURE).items()}
        except RequestError as exc:
            return str(exc)
        except OverflowError:  # the walk's own answer to an integer past 64 bits (the HTTP layer refuses it first)
            return "OverflowError"

    fast = outcome()
    monkeypatch.setattr(model_io, "_columns_fast", lambda instances, signature: None)

    assert fast == outcome()


def test_a_small_batch_of_plain_floats_is_narrowed_without_float64_as_numpy_narrows_it(monkeypatch):
    from kfkit.serving import model_io

    small = [{"island": "a", "culmen_length_mm": 0.1 * i, "count": i} for i in range(model_io.SMALL_BATCH)]
    wide, asarray = [], np.asarray

    def spy(values, dtype=None, *args, **kwargs):  # the general way goes through float64
        wide.append(dtype)
        return asarray(values, dtype, *args, **kwargs)

    monkeypatch.setattr(model_io.np, "asarray", spy)
    arrays = model_io._columns_fast(small, SIGNATURE)
    monkeypatch.undo()

    assert np.float64 not in wide and arrays is not None and arrays["culmen_length_mm"].dtype == np.float32
    narrowed = np.array([0.1 * i for i in range(model_io.SMALL_BATCH)]).astype(np.float32)
    assert arrays["culmen_length_mm"].tobytes() == narrowed.tobytes()


def test_prediction_rows_made_a_column_at_a_time_match_the_item_by_item_rows():
    outputs = {"classes": np.array([b"Gentoo", b"Adelie"], dtype=object), "class_ids": np.array([2, 0]),
               "scores": np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32), "s": np.array([b"x", b"y"]),
               "extra_rows": np.array([1.5, 2.5, 3.5])}
    slow = []
    for i in range(2):
        row = {}
        for name, values in outputs.items():
            value = values[i]
            row[name] = (value.decode() if isinstance(value, bytes) else value.tolist() if isinstance(value, np.ndarray)
                         else value.item() if isinstance(value, np.generic) else value)
        slow.append(row)

    assert _rows_fast(outputs, 2) == slow
    assert _rows_fast({"scalar": np.array(1.0)}, 1) is None and _rows_fast({"short": np.array([1.0])}, 2) is None


# --- the writer thread, as the OS shows it ------------------------------------------------------------------

def test_a_thread_named_for_the_os_shows_that_name_in_proc():
    from kfkit.serving.server import name_os_thread

    seen = []

    def named():
        seen.append((name_os_thread("kfkit-test-name-too-long"),
                     open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip()))

    thread = threading.Thread(target=named)
    thread.start()
    thread.join()

    assert seen == [(True, "kfkit-test-name")]  # the OS keeps 15 bytes


def test_the_buffered_logs_writer_thread_names_itself_for_the_os(tmp_path, monkeypatch):
    from kfkit.serving import server

    named = threading.Event()
    names = []
    monkeypatch.setattr(server, "name_os_thread", lambda name: names.append(name) or named.set())

    request_log = buffered_log(tmp_path)
    try:
        assert named.wait(10)
    finally:
        request_log.close()

    assert names == [server.WRITER_THREAD] == ["kfkit-log"]


def thread_nice(tid: int) -> int:
    return int(open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()[16])  # field 19: nice


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux: a thread's own nice value")
def test_a_thread_lowers_its_own_priority_and_no_other_threads():
    from kfkit.serving.server import lower_os_thread_priority

    seen = []

    def lowered():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + 2)
        before = thread_nice(threading.get_native_id())
        seen.append((before, lower_os_thread_priority(7), thread_nice(threading.get_native_id())))
        seen.append((lower_os_thread_priority(30), thread_nice(threading.get_native_id())))

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()

    (before, done, after), (done_again, capped) = seen
    assert before > 0 and done and after == min(19, before + 7) and done_again and capped == 19
    assert thread_nice(threading.get_native_id()) == os.getpriority(os.PRIO_PROCESS, 0)  # this thread kept its own


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux: a thread's own nice value")
def test_the_buffered_logs_writer_thread_runs_below_the_servers_priority(tmp_path, monkeypatch):
    from kfkit.serving import server

    lowered, real = threading.Event(), server.lower_os_thread_priority
    monkeypatch.setattr(server, "lower_os_thread_priority", lambda by: (real(by), lowered.set())[0])
    request_log = buffered_log(tmp_path)
    try:
        assert lowered.wait(10)
        nice = thread_nice(request_log._writer.native_id)
    finally:
        request_log.close()

    assert server.WRITER_NICE > 0 and nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + server.WRITER_NICE)
