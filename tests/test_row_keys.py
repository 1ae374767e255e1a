"""The compiled split-key pass (kfkit.warehouse._row_key_kernel) against the reference spellings.

The reference for a FLOAT64 is json_functions.double_to_string, ZetaSQL's RoundTripDoubleToString
(%.15g, %.17g when that does not read back), which the conformance cases and
test_float_keys_are_spelled_as_bigquerys_cast_to_string_spells_them hold to BigQuery's CAST; the
reference for a whole row is key_strings (every value spelled by DuckDB) hashed by pyfarmhash's
or the Numba FarmHash. The kernel must give the same string for every value it spells itself
and leave every other value to the reference.
"""

import decimal
import math
import random
import struct

import farmhash
import numba
import numpy as np
import pyarrow as pa
import pytest

from kfkit.components.ingest.ingest import bucket_of, key_strings, row_fingerprints
from kfkit.warehouse import _row_key_kernel as kernel
from kfkit.warehouse.farmhash import VECTOR_THRESHOLD, fingerprint64_arrow
from kfkit.warehouse.json_functions import double_to_string

EDGES = [0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 0.1 + 0.2, 0.1, 1 / 3, 2 / 3, 39.1, 12.25, 0.5, 1.0,
         -1.0, 9.5, 1e-4, 1e-5, 1.5e-05, 0.0001234, 1e15, 1e16, 1e17, 1e21, 1e22, 1e23, 9.999999999999999e22,
         1234567890123456.0, 123456789012345.0, 123456789012345.5, 999999999999999.9, 9999999999999999.0,
         99999999999999.99, 123456789012345678.0, 2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 60, 2.0 ** 63, 2.0 ** 64,
         5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308, 1e-300, 1e300,
         0.1234567890123456, 0.12345678901234566, 1.0000000000000002, 0.9999999999999999, 100.0, 1e-7, -1e-7]


def random_doubles(rng: random.Random) -> list[float]:
    values = list(EDGES)
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(60_000)]
    values += [rng.gauss(0, 1) for _ in range(40_000)]
    values += [rng.gauss(0, 1) * 10.0 ** rng.randint(-20, 20) for _ in range(40_000)]
    values += [round(rng.uniform(-1000, 1000), rng.randint(0, 14)) for _ in range(20_000)]
    values += [float(rng.randint(-2 ** 63, 2 ** 63)) for _ in range(10_000)]
    values += [float(rng.randint(-10 ** 6, 10 ** 6)) for _ in range(5_000)]
    values += [rng.uniform(1e14, 1e18) for _ in range(20_000)]  # the 15- to 17-digit integers and halves
    # values whose shortest spelling has 15, 16 and 17 significant digits, across the exponent range
    values += [float("%.*g" % (digits, rng.uniform(1, 10) * 10.0 ** rng.randint(-320, 307)))
               for digits in (14, 15, 16, 17) for _ in range(10_000)]
    for e in range(-323, 309):  # every power of ten and both of its neighbours
        p = float(f"1e{e}")
        values += [p, math.nextafter(p, math.inf), math.nextafter(p, -math.inf)]
    values += [2.0 ** e for e in range(-1074, 1024)]
    values += [math.nextafter(2.0 ** e, 0.0) for e in range(-1073, 1024)]
    return values + [-v for v in values[:50_000]]


def spell_all(values: list[float]) -> tuple[list[str | None], np.ndarray]:
    array = np.array(values, dtype=np.float64)
    data = np.empty(len(array) * 25 + 8, np.uint8)
    offsets = np.empty(len(array) + 1, np.int64)
    deferred = np.zeros(len(array), np.uint8)
    kernel.spell_many(array, array.view(np.uint64), np.ones(len(array), np.uint8), data, offsets, deferred,
                      kernel.tables())
    raw = data.tobytes()
    spelled = [None if deferred[i] else raw[offsets[i]:offsets[i + 1]].decode() for i in range(len(array))]
    return spelled, deferred


def test_every_double_the_kernel_spells_is_spelled_as_the_reference_spells_it():
    values = random_doubles(random.Random(36))
    spelled, deferred = spell_all(values)

    wrong = [(v, s, double_to_string(v)) for v, s in zip(values, spelled) if s is not None and s != double_to_string(v)]
    assert wrong == []
    # what it leaves to the reference: subnormal and tiny values, and decisions within 2^-30 of a rounding
    # boundary that its product cannot settle exactly (10^k not a double, and not an integer below 2^64)
    near_boundary = [v for v, d in zip(values, deferred) if d and abs(v) >= 2.0 ** -923]
    assert len(near_boundary) < 0.002 * len(values)
    assert all(abs(v) < 1e-6 or abs(v) >= 2.0 ** 64 for v in near_boundary)


def test_full_precision_doubles_are_never_left_to_the_reference():
    values = np.random.default_rng(0).normal(size=200_000) * 10.0 ** np.random.default_rng(1).integers(-30, 18, 200_000)
    spelled, deferred = spell_all(list(values))

    assert deferred.sum() == 0
    assert spelled[:2000] == [double_to_string(v) for v in values[:2000]]


def test_exact_ties_and_half_ulp_decimals_are_settled_by_the_kernel():
    # a 15-digit tie, a 17-digit tie, a 15-digit decimal exactly half an ulp away (above 1e17 and below)
    values = [123456789012345.5, 1366463470549685.75, 180163486986612.5, 5.5364974913553896e16,
              9.7604979278388e17, 2.0 ** 60, 2.0 ** 63 + 2048, 1e19 + 2048]
    spelled, deferred = spell_all(values)

    assert deferred.sum() == 0
    assert spelled == [double_to_string(v) for v in values]


def test_the_edge_cases_are_spelled_as_printf_spells_them():
    spelled, _ = spell_all([0.1 + 0.2, 0.1234567890123456, 1.5e-05, 1e16, 1e-5, 123456789012345.0, 1e21, -0.0,
                            math.nan, -math.inf, 100.0, 1.7976931348623157e308, 0.0001234, 1e17 + 16])

    assert spelled == ["0.30000000000000004", "0.12345678901234559", "1.5e-05", "1e+16", "1e-05", "123456789012345",
                       "1e+21", "-0", "nan", "-inf", "100", "1.7976931348623157e+308", "0.0001234",
                       "1.0000000000000002e+17"]


@numba.njit
def _eight_digit_mismatch() -> int:
    out = np.zeros(8, np.uint8)
    for v in range(100_000_000):
        kernel._eight(out, 0, np.uint64(v))
        rest = v
        for j in range(7, -1, -1):
            if out[j] != 48 + rest % 10:
                return v
            rest //= 10
    return -1


def test_the_eight_digit_encoder_is_exact_on_every_value():
    assert _eight_digit_mismatch() == -1


def test_the_compiled_farmhash_matches_pyfarmhash_on_every_length_class():
    rng = np.random.default_rng(5)
    strings = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in list(range(0, 300)) * 100]
    assert len(strings) >= VECTOR_THRESHOLD
    expected = np.array([farmhash.fingerprint64(s) for s in strings], dtype=np.uint64).view(np.int64)

    assert np.array_equal(fingerprint64_arrow(pa.array(strings, pa.binary())), expected)


def mixed_table(rows: int) -> pa.RecordBatch:
    rng = random.Random(11)
    pool = EDGES + [123456789012345.5, 5e-324, 999999999999999.9]
    floats = [None if i % 53 == 0 else (rng.choice(pool) if i % 7 == 0 else rng.gauss(0, 100)) for i in range(rows)]
    return pa.record_batch({
        "id": pa.array(range(rows), pa.int64()),
        "x": pa.array(floats, pa.float64()),
        "y": pa.array([rng.random() * 10 ** rng.randint(-8, 20) for _ in range(rows)], pa.float64()),
        "name": pa.array([None if i % 31 == 0 else f"n{i % 1000}\u00e9" for i in range(rows)]),
        "f32": pa.array([None if i % 17 == 0 else rng.gauss(0, 1) for i in range(rows)], pa.float32()),
        "cat": pa.array([f"c{i % 5}" for i in range(rows)]).dictionary_encode(),
        "flag": pa.array([i % 3 == 0 for i in range(rows)]),
        "amount": pa.array([decimal.Decimal(i) / 8 for i in range(rows)], pa.decimal128(38, 9)),
        "empty": pa.array([""] * rows),
        "nothing": pa.nulls(rows, pa.float64()),
        "half": pa.array(np.arange(rows) % 2049, pa.float16()),
    })


@pytest.mark.parametrize("key", [None, ["x"], ["y", "id"], ["name", "f32", "x"], ["amount", "y"]])
def test_the_fused_pass_hashes_every_row_as_the_reference_spelling_does(key):
    batch = mixed_table(VECTOR_THRESHOLD + 4321)
    reference = fingerprint64_arrow(key_strings(batch, key))  # every value spelled by DuckDB

    fused = row_fingerprints(batch, key)

    assert np.array_equal(fused, reference)
    assert np.array_equal(bucket_of(fused), bucket_of(reference))  # so the split is the same
    sliced = batch.slice(1234, VECTOR_THRESHOLD + 17)  # an Arrow offset into every buffer
    assert np.array_equal(row_fingerprints(sliced, key), fingerprint64_arrow(key_strings(sliced, key)))


def test_once_the_fused_pass_is_loaded_a_small_batch_goes_through_it_too(monkeypatch):
    from kfkit.warehouse import farmhash as fh
    row_fingerprints(mixed_table(VECTOR_THRESHOLD), None)  # loads the kernel
    small = mixed_table(999)
    reference = fingerprint64_arrow(key_strings(small, None))
    fused_rows = []
    joined = fh.fingerprint64_joined
    monkeypatch.setattr(fh, "fingerprint64_joined", lambda parts, sep: fused_rows.append(len(parts[0])) or joined(parts, sep))

    fingerprints = row_fingerprints(small, None)

    assert fused_rows == [999]
    assert np.array_equal(fingerprints, reference)


def test_a_small_array_is_hashed_as_pyfarmhash_hashes_it_once_the_compiled_farmhash_is_loaded():
    fingerprint64_arrow(pa.array(["x"] * VECTOR_THRESHOLD))  # loads the kernel
    strings = [f"key {i}\u00e9" * (i % 9) for i in range(500)]

    fingerprints = fingerprint64_arrow(pa.array(strings))

    assert np.array_equal(fingerprints, np.array([farmhash.fingerprint64(s) for s in strings], np.uint64).view(np.int64))
