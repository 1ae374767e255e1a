"""FarmHash Fingerprint64 (BigQuery's FARM_FINGERPRINT) over whole Arrow string arrays.

BigQuery defines FARM_FINGERPRINT as FarmHash's Fingerprint64, which is `farmhashna::Hash64` in
Google's farmhash.cc (github.com/google/farmhash, MIT). pyfarmhash wraps that C++ code but takes one
Python string per call, which made hashing the slowest part of local ingest. This module compiles
the same algorithm with Numba and runs it over an Arrow array's offsets and data buffers, with no
Python object per row. Small arrays go through pyfarmhash until the kernel is loaded: the first Numba
call compiles (or loads from its cache), which is not worth it for a few thousand rows. The tests compare both
paths on every length class of the algorithm (0-3, 4-7, 8-16, 17-32, 33-64, 65+ bytes).

fingerprint64_joined hashes whole split keys (columns joined with U+001F) without building them
as Arrow strings, spelling FLOAT64 values in the same compiled pass (kfkit.warehouse._row_key_kernel)
as BigQuery's CAST(FLOAT64 AS STRING) does; tests/test_row_keys.py holds it to the reference path.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

# Below this many rows the per-row C call is cheaper than loading the compiled kernel.
VECTOR_THRESHOLD = 20_000

_kernel = None


def _compile():
    # compiled (or loaded from Numba's on-disk cache) on first use only
    from kfkit.warehouse._farmhash_kernel import many
    return many


def _string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(data bytes, offsets into them) of a string/binary array, slice offset applied."""
    if pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        offset_type = np.int32
    else:
        offset_type = np.int64
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[array.offset: array.offset + len(array) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64, copy=False)


def fingerprint64_arrow(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Fingerprint64 of every value of a string or binary Arrow array, as BigQuery's signed INT64.

    A null value hashes as the empty string (callers that need NULL out mask it themselves).
    """
    global _kernel
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_string_view(array.type) or pa.types.is_binary_view(array.type):
        array = array.cast(pa.large_string() if pa.types.is_string_view(array.type) else pa.large_binary())
    if array.null_count:  # Arrow lets a null own bytes in the data buffer: make every slot empty
        import pyarrow.compute as pc
        array = pc.fill_null(array, b"" if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type) else "")
    if len(array) < VECTOR_THRESHOLD and _kernel is None:
        import farmhash
        fp = farmhash.fingerprint64
        values = array.to_pylist()
        unsigned = np.fromiter((fp(v) for v in values), dtype=np.uint64,
                               count=len(values))
        return unsigned.view(np.int64)
    if _kernel is None:
        _kernel = _compile()
    data, offsets = _string_buffers(array)
    out = np.empty(len(array), dtype=np.uint64)
    _kernel(data, offsets, out)
    return out.view(np.int64)


_row_kernel = None


def joined_is_worth(rows: int) -> bool:
    """Whether fingerprint64_joined pays for `rows` rows: from VECTOR_THRESHOLD rows, and for any
    number once its kernel is loaded (the loading is what a small batch does not pay for; a stream's
    small batches, such as DuckDB's row-group remainders, then cost the kernel's time, not the reference's)."""
    return rows >= VECTOR_THRESHOLD or _row_kernel is not None


def _row_compile():
    from kfkit.warehouse import _row_key_kernel
    return _row_key_kernel.row_fingerprints, _row_key_kernel.tables()


def _plain(array: pa.Array) -> pa.Array:
    if pa.types.is_string_view(array.type):
        return array.cast(pa.large_string())
    if pa.types.is_binary_view(array.type):
        return array.cast(pa.large_binary())
    return array


def fingerprint64_joined(parts: list[pa.Array], separator: str) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprint64 of each row's parts joined with `separator` (one byte), a null part as ''.

    A float64 part is spelled in the kernel as BigQuery's CAST(FLOAT64 AS STRING)
    (kfkit.warehouse._row_key_kernel); any other part must be a string or binary array. Returns the
    fingerprints (int64) and the rows the kernel left to the reference spelling (their fingerprint unset).
    """
    global _row_kernel
    if _row_kernel is None:
        _row_kernel = _row_compile()
    kernel, table = _row_kernel
    rows = len(parts[0])
    kinds = np.empty(len(parts), dtype=np.int64)
    index = np.empty(len(parts), dtype=np.int64)
    floats, texts = [], []
    for j, part in enumerate(parts):
        if isinstance(part, pa.ChunkedArray):
            part = part.combine_chunks() if part.num_chunks != 1 else part.chunk(0)
        if pa.types.is_float64(part.type):
            kinds[j], index[j] = 0, len(floats)
            floats.append(part)
        else:
            kinds[j], index[j] = 1, len(texts)
            texts.append(_plain(part))
    # row-major (the kernel walks rows): ~10% quicker than a column per row of the array
    values = np.empty((rows, len(floats)), dtype=np.float64)
    value_valid = np.ones((rows, len(floats)), dtype=np.uint8)
    for c, part in enumerate(floats):
        data = part.buffers()[1]
        if data is not None:
            values[:, c] = np.frombuffer(data, dtype=np.float64)[part.offset: part.offset + rows]
        if part.null_count:
            value_valid[:, c] = np.asarray(part.is_valid())
    text_offsets = np.empty((rows + 1, len(texts)), dtype=np.int64)
    text_valid = np.ones((rows, len(texts)), dtype=np.uint8)
    datas, base, longest = [], 0, 0
    for c, part in enumerate(texts):
        data, offsets = _string_buffers(part)
        text_offsets[:, c] = offsets - offsets[0] + base
        data = data[offsets[0]: offsets[-1]]
        datas.append(data)
        base += len(data)
        if rows:
            longest += int(np.diff(offsets).max())
        if part.null_count:
            text_valid[:, c] = np.asarray(part.is_valid())
    text = np.concatenate(datas) if datas else np.zeros(1, np.uint8)
    if len(text) == 0:
        text = np.zeros(1, np.uint8)
    out = np.empty(rows, dtype=np.uint64)
    deferred = np.zeros(rows, dtype=np.uint8)
    bits = values.view(np.uint64)

    def run(start: int, stop: int) -> None:  # the kernel releases the GIL: one row range per thread
        scratch = np.empty(longest + 25 * len(floats) + len(parts) + 1, dtype=np.uint8)
        kernel(kinds, index, values, bits, value_valid, text, text_offsets, text_valid, scratch, out, deferred,
               table, start, stop)

    threads = min(KEY_THREADS, max(1, rows // VECTOR_THRESHOLD))
    if threads == 1:
        run(0, rows)
    else:
        bounds = np.linspace(0, rows, threads + 1).astype(int)
        list(_pool().map(run, bounds[:-1], bounds[1:]))
    return out.view(np.int64), np.flatnonzero(deferred)


# threads that spell and hash one batch's keys together (each takes a share of its rows)
KEY_THREADS = min(4, os.cpu_count() or 1)
_threads = None


def _pool():
    global _threads
    if _threads is None:
        from concurrent.futures import ThreadPoolExecutor
        _threads = ThreadPoolExecutor(max_workers=KEY_THREADS, thread_name_prefix="kfkit-keys")
    return _threads
