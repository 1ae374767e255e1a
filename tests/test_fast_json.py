"""kfkit.serving.fast_json: orjson's speed only where its answer is json's (the reference here is the
standard json module, which the server used alone before and whose errors kfkit's messages name)."""

import json
import math
import random
import struct

import pytest

from kfkit.serving import fast_json
from kfkit.serving.http_app import parse_predict_request

BODIES = [
    b'{"instances": [{"x": 0.1000000000000000055511151231257827, "y": 4.9e-324, "z": -0.0}]}',
    b'{"instances": [{"x": 1.7976931348623157e308, "n": -123456789012345678, "e": 1E2}]}',
    b'{"instances": [{"s": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\n"}], "parameters": {"a": [1, 2]}}',
    '{"instances": [{"s": "café"}]}'.encode(),
    b'{"instances": [[[[1]]]], "instances": [{"last": true, "n": null}]}',
    b' \n{ "instances" : [ ] } \t',
]


def _typed(value):
    """json.dumps with the type of every number kept: 1 and 1.0 differ, -0.0 and 0.0 differ."""
    return json.dumps(value, default=str, allow_nan=True, sort_keys=True) + repr(
        [type(v).__name__ for v in _leaves(value)])


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@pytest.mark.parametrize("raw", BODIES)
def test_a_body_read_fast_is_the_value_json_reads(raw):
    expected = json.loads(raw)

    body, instances_json, _ = parse_predict_request(raw)

    assert _typed(body) == _typed(expected)
    if instances_json is not None:
        assert instances_json.isascii() and b"\n" not in instances_json and b"\r" not in instances_json
        assert _typed(json.loads(instances_json)) == _typed(expected["instances"])


@pytest.mark.parametrize("raw, kept", [
    (b'{"instances": [{"x": 1E2, "s": "a b"}]}', b'[{"x": 1E2, "s": "a b"}]'),
    (b' \t{ "instances"\t:  [ 1 , 2 ]  \t}\t ', b'[ 1 , 2 ]'),
    (b'{"instances":[]}', b'[]'),
])
def test_the_instances_a_client_wrote_alone_in_its_body_are_kept_as_it_wrote_them(raw, kept):
    body, instances_json, _ = parse_predict_request(raw)

    assert instances_json == kept
    assert json.loads(instances_json) == body["instances"] == json.loads(raw)["instances"]


@pytest.mark.parametrize("raw", [
    b'{"instances": [[1]], "instances": [{"last": 1}]}',        # the key twice: the text would hold both
    b'{"\\u0069nstances": [[1]], "instances": [{"last": 1}]}',  # ... once spelled with an escape
    b'{"instances": [{"s": "instances"}]}',                      # the key's spelling inside a value
    b'{"instances": [{"s": "a\\\\"}]}',                        # a backslash anywhere
    b'{"instances": [1,\n 2]}', b'{"instances": [1,\r 2]}',      # a line break: a record is one line
    '{"instances": ["\u00e9"]}'.encode(),                      # not ASCII: the log's lines are
    b'{"parameters": {}, "instances": [1]}', b'{"instances": [1], "parameters": {}}',
])
def test_instances_the_log_cannot_keep_as_written_are_encoded_and_read_back_the_same(raw):
    body, instances_json, _ = parse_predict_request(raw)

    assert fast_json.instances_text(raw, json.loads(raw)) is None
    assert instances_json == fast_json.dumps_bytes(body["instances"])
    assert instances_json.isascii() and json.loads(instances_json) == json.loads(raw)["instances"]


def test_no_text_is_kept_for_a_log_that_will_not_record_it():
    assert parse_predict_request(b'{"instances": [1]}', keep_text=False) == ({"instances": [1]}, None, True)


def test_a_body_is_read_fast_unless_it_holds_a_long_run_of_digits():
    assert fast_json.loads_fast(b'{"instances": [{"x": 123456789012345678}]}') == {"instances": [{"x": 123456789012345678}]}
    # orjson reads 2**64 as a float; json keeps the integer, which the server refuses by name
    assert fast_json.loads_fast(b'{"instances": [{"x": 18446744073709551616}]}') is NotImplemented
    assert parse_predict_request(b'{"instances": [{"x": 18446744073709551616}]}')[0]["instances"][0]["x"] == 2 ** 64


@pytest.mark.parametrize("raw", [b'{"instances": [NaN]}', b'{"instances": [1e999]}', b'{"instances": ["\\ud800"]}',
                                 b'\xef\xbb\xbf{"instances": []}', b'{"instances": [1,]}'])
def test_what_orjson_will_not_read_goes_to_json(raw):
    assert fast_json.loads_fast(raw) is NotImplemented


def test_random_doubles_come_back_exactly_from_both_directions():
    rng = random.Random(7)
    values = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(20000)]
    values = [v for v in values if math.isfinite(v)] + [5e-324, -0.0, 2.0 ** 53 + 2, 1e16, 1e-7, 0.1]

    encoded = fast_json.dumps_bytes(values)
    body, _, _ = parse_predict_request(json.dumps({"instances": values}).encode())

    assert [struct.pack("<d", v) for v in json.loads(encoded)] == [struct.pack("<d", v) for v in values]
    assert [struct.pack("<d", v) for v in body["instances"]] == [struct.pack("<d", v) for v in values]


@pytest.mark.parametrize("value", [[math.nan], [{"p": math.inf}], [-math.inf]])
def test_dumps_refuses_nan_and_infinities_as_json_does(value):
    with pytest.raises(ValueError):
        fast_json.dumps_bytes(value)


@pytest.mark.parametrize("value", [
    [{"classes": "caf\u00e9", "scores": [0.25, 0.75]}],  # non-ASCII: escaped, the log's lines are ASCII
    [None, {"n": None}],                                   # null that is not a NaN
    [2 ** 70, -(2 ** 64)],                                 # integers orjson does not write
    ["null", "line\nbreak", "\u2028"],
])
def test_dumps_writes_what_json_writes_where_orjson_would_differ(value):
    assert fast_json.dumps_bytes(value) == fast_json.ENCODER.encode(value).encode("ascii")


def test_dumps_refuses_what_json_cannot_write():
    with pytest.raises(TypeError):
        fast_json.dumps_bytes([{1, 2}])


CHECKED = BODIES + [
    b'{"instances": [{"x": 9223372036854775807}, {"y": 9223372036854775808}]}',
    b'{"instances": [{"x": 18446744073709551615}]}',
    b'{"instances": [{"x": -9223372036854775809}]}',
    b'{"instances": [{"x": 999999999999999999}, {"x": -999999999999999999}]}',
    b'{"instances": [{"x": 1e400}]}',
    b'{"instances": [{"x": -1e309, "y": 1}]}',
    b'{"instances": [{"s": "\\ud800"}]}',
    b'{"instances": [{"s": "\\udfff x"}]}',
    b'{"instances": [{"nested": {"a": [1, 2, {"b": 1e400}]}}]}',
    b'{"instances": [{"deep": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}]}",
    b'{"instances": [{"deep": ' + b"[" * 29 + b"1" + b"]" * 29 + b"}]}",
    b'{"instances": [1, "a", null, {"x": 1}]}',
    b'{"instances": [{"t": true, "f": false, "n": null, "s": "", "i": 0, "x": 0.0}]}',
]


@pytest.mark.parametrize("raw", CHECKED)
def test_the_server_judges_instances_as_json_and_the_full_walk_would(raw):
    from kfkit.serving.http_app import BadRequest, check_values, checked_instances, parse_body, parse_predict_request

    def outcome(parse, check):
        try:
            instances = parse(raw)["instances"]
            check(instances)
        except BadRequest as exc:
            return exc.status, exc.message
        return "accepted", _typed(instances)

    served = outcome(lambda r: parse_predict_request(r)[0],
                     lambda i: checked_instances(i, parse_predict_request(raw)[2]))
    walked = outcome(parse_body, lambda i: check_values(i, "instances"))

    assert served == walked
