"""Load an exported kfkit SavedModel and predict, checking inputs against its signature first.

Used by evaluate, batch prediction and the model server: a request names every field the
signature has, with the right type, or it gets an error naming the field and what was expected.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kfkit.config import local_path
from kfkit.errors import KfkitError
from kfkit.tabular import NULL_INT, ModelSpec, features_to_numpy


class RequestError(KfkitError):
    """A prediction request does not match the model's signature."""


def _instance_error(index: int, message: str) -> RequestError:
    return RequestError(f"instance {index}: {message}")


FLOAT32_MAX = float(np.finfo(np.float32).max)


_NUMBERS = frozenset({int, float})
_FLOATS = frozenset({float})
SMALL_BATCH = 16  # up to this many instances, a float column is checked in Python: numpy's per-call cost is more


def _columns_fast(instances: list[Any], signature: dict[str, str]) -> dict[str, np.ndarray] | None:
    """The arrays instances_to_arrays makes, column by column in C, when every instance is plainly
    valid (each field present, no unknown one, no null, numbers finite and in range, integers not
    floats): a per-value loop in Python was a third of a 64-instance request. None when anything
    needs the per-value walk, which names what is wrong or converts what it allows (nulls,
    integral floats)."""
    width = len(signature)
    for instance in instances:
        if type(instance) is not dict or len(instance) != width:
            return None
    arrays = {}
    small = len(instances) <= SMALL_BATCH
    try:
        for name, dtype in signature.items():
            column = [instance[name] for instance in instances]  # KeyError: a field missing
            kinds = set(map(type, column))
            if dtype == "float32":
                if small and kinds == _FLOATS:
                    # the same check and the same narrowing (float64 to float32, rounded to nearest) as
                    # below, without numpy's four calls: at one instance, 2 us a column against 8
                    if not all(-FLOAT32_MAX <= value <= FLOAT32_MAX for value in column):  # also false for nan
                        return None
                    arrays[name] = np.array(column, dtype=np.float32)
                    continue
                if not kinds <= _NUMBERS:
                    return None
                wide = np.asarray(column, dtype=np.float64)
                if not (np.abs(wide) <= FLOAT32_MAX).all():  # also false for nan
                    return None
                arrays[name] = wide.astype(np.float32)
            elif dtype == "int64":
                if kinds != {int}:
                    return None
                arrays[name] = np.asarray(column, dtype=np.int64)  # OverflowError beyond 64 bits
            else:
                if kinds != {str}:
                    return None
                arrays[name] = np.asarray(column, dtype=object)
    except (KeyError, OverflowError):
        return None
    return arrays


def instances_to_arrays(instances: list[Any], signature: dict[str, str]) -> dict[str, np.ndarray]:
    """Vertex-style instances (a list of {field: value}) -> one array per signature field."""
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list of objects")
    fast = _columns_fast(instances, signature)
    if fast is not None:
        return fast
    expected = ", ".join(f"{k} ({v})" for k, v in signature.items())
    columns: dict[str, list] = {name: [] for name in signature}
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise _instance_error(i, f"expected an object with fields {expected}, got {type(instance).__name__}")
        unknown = [k for k in instance if k not in signature]
        if unknown:
            raise _instance_error(i, f"unknown field {unknown[0]!r}; the model takes {expected}")
        for name, dtype in signature.items():
            if name not in instance:
                raise _instance_error(i, f"missing field {name!r} ({dtype})")
            value = instance[name]
            if dtype == "float32":
                if value is None:
                    value = math.nan
                elif isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise _instance_error(i, f"field {name!r} expects a number, got {value!r}")
                elif not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    raise _instance_error(i, f"field {name!r} is {value!r}, beyond the float32 range the model takes")
            elif dtype == "int64":
                if value is None:
                    value = NULL_INT
                elif isinstance(value, float) and value.is_integer():
                    value = int(value)
                elif isinstance(value, bool) or not isinstance(value, int):
                    raise _instance_error(i, f"field {name!r} expects an integer, got {value!r}")
            else:
                if value is None:
                    value = ""
                elif not isinstance(value, str):
                    raise _instance_error(i, f"field {name!r} expects a string, got {value!r}")
            columns[name].append(value)
    numpy_types = {"float32": np.float32, "int64": np.int64}
    return {name: np.asarray(values, dtype=numpy_types.get(signature[name], object)) for name, values in columns.items()}


def tensorflow_runtime():
    """TensorFlow for running a SavedModel, without the eager Keras import that `import tensorflow` does.

    TensorFlow imports `keras.src.optimizers` at import time (so Keras optimizers can register
    with SavedModel loading) and passes over an ImportError there; serving a kfkit SavedModel
    uses only TensorFlow's runtime, and Keras's import (all of Keras, matplotlib, pandas) is
    about 2 s of each scoring process's start-up (benchmarks/pipeline.py). `tf.keras` still
    loads on first use. A process that already imported TensorFlow gets it as it is.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    skipped = "keras.src.optimizers"
    placed = skipped not in sys.modules
    if placed:
        sys.modules[skipped] = None  # makes that one import raise ImportError
    try:
        import tensorflow as tf
    finally:
        if placed and sys.modules.get(skipped, 0) is None:
            del sys.modules[skipped]
    return tf


def serving_threads(intra_op: int) -> bool:
    """TensorFlow's intra-op threads for a model server: 1 (kfkit serve's default) runs each operation
    on the thread that calls it, and a model loaded after it runs its serving function's own graph
    there (on_calling_thread). A server's requests are small, and concurrent ones are predicted
    together: a pool's threads handing one small operation around cost more than they share
    (benchmarks/serve.py: the same predictions for about 15% less of the server's CPU, faster at
    every batch size up to 4096 rows on 2 cores), and waiting for work they take CPU from the
    clients. With them, one inter-op thread that does not spin (quiet_inter_op_pool). 0 leaves
    TensorFlow's choice (one per core) for both. Whether it took effect: TensorFlow fixes it when it
    first runs, so a process that already ran TensorFlow keeps what it had."""
    tf = tensorflow_runtime()
    if intra_op <= 0:
        return False
    threads = tf.config.threading
    if threads.get_intra_op_parallelism_threads() == intra_op and threads.get_inter_op_parallelism_threads() == 1:
        return True
    try:
        threads.set_intra_op_parallelism_threads(intra_op)
        threads.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # "cannot be modified after initialization"
        return False
    quiet_inter_op_pool()
    return True


def quiet_inter_op_pool() -> bool:
    """Before TensorFlow first runs: its inter-op pool's threads sleep when they find no work rather
    than spin for it (ConfigProto.experimental.disable_thread_spinning, which the eager context has no
    setter for). The functions a kfkit SavedModel calls inside its serving function run on that pool
    (the default executor), whatever executor the call itself names; with two threads spinning
    between a server's predictions, each one-instance prediction cost 170-190 us of the pool's CPU
    besides the calling thread's 450 us. With one thread and no spinning, kfkit serve took 8-14% less
    CPU per request at every batch and concurrency, 3-7% more requests a second at concurrency 8
    and 32, the same at 1 (benchmarks/serve.py's rows, closely paired). Whether it took effect."""
    try:
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.eager import context

        ctx = context.context()
        if ctx._context_handle is not None:
            return False  # ran already: its pool is made
        config = config_pb2.ConfigProto()
        if ctx._config is not None:
            config.CopyFrom(ctx._config)
        config.experimental.disable_thread_spinning = True
        ctx._config = config
    except Exception:  # noqa: BLE001 - another TensorFlow's context: its pool as it is
        return False
    return True


def _rows_fast(outputs: dict[str, np.ndarray], count: int) -> list[dict[str, Any]] | None:
    """predict_instances' rows made a column at a time (tolist in C rather than an item per value);
    the same values: a 1-D column's bytes decoded, a wider column's rows as lists. None for a shape
    this does not cover (fewer rows than instances, a scalar output)."""
    names, columns = list(outputs), []
    for values in outputs.values():
        if values.ndim == 0 or len(values) < count:
            return None
        column = values[:count].tolist()
        if values.ndim == 1 and values.dtype.kind in "OS":
            column = [v.decode() if isinstance(v, bytes) else v for v in column]
        columns.append(column)
    return [dict(zip(names, row)) for row in zip(*columns)]


def flat_call_order(fn, signature: dict[str, str], tf_types: dict) -> list[str] | None:
    """The order in which the serving function takes its inputs flat, when calling it flat gives what
    calling it by keyword does: every input a keyword-only, rank-1 tensor of the signature's type.
    None (call by keyword) for anything else, or a TensorFlow whose function lacks the flat call.

    The keyword call matches the arguments to the function's signature in Python on every call
    (binding, casting each tensor to its spec, flattening), about a third of the call's time for
    a 64-instance request, and ends in the same flat call with the arguments in this order; a
    kfkit request's tensors are made from the signature, so that matching decides nothing."""
    try:
        parameters = list(fn.function_type.parameters.values())
        if not callable(getattr(fn, "_call_flat", None)) or fn.structured_input_signature[0]:
            return None
        order = []
        for parameter in parameters:
            spec, name = parameter.annotation, parameter.name
            if (parameter.kind is not parameter.KEYWORD_ONLY or name not in signature
                    or spec.dtype != tf_types[signature[name]] or spec.shape.rank != 1):
                return None
            order.append(name)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return order if sorted(order) == sorted(signature) else None


SINGLE_THREADED_EXECUTOR = "SINGLE_THREADED_EXECUTOR"


def on_calling_thread(tf, fn, order: list[str], tf_types: dict, signature: dict[str, str]):
    """`fn` called flat with its inputs in `order`, run by TensorFlow's single-threaded executor: each
    operation of its graph on the thread that calls it, one after another (the functions that graph
    calls keep the executor they name, the default one: quiet_inter_op_pool). None where that executor cannot run
    it (a GPU, control flow it lacks) or answers a probe row otherwise than `fn` does.

    The default executor hands each operation to its inter-op pool, whose threads go to sleep between
    a server's requests: waking them took about 200-340 us of a one-instance prediction that came
    after a 300 us wait (1,100-1,300 us back to back, in one process on this 2-core machine), and
    the single-threaded executor does not pay it (1,100 us either way)."""
    specs = [tf.TensorSpec([None], tf_types[signature[name]]) for name in order]
    try:
        with tf.experimental.function_executor_type(SINGLE_THREADED_EXECUTOR):
            # the executor is fixed where the call is traced: the wrapper's call of fn carries it
            call = tf.function(lambda *tensors: fn._call_flat(list(tensors), fn.captured_inputs)
                               ).get_concrete_function(*specs)
        blank = {"float32": 0.0, "int64": 0, "string": b""}
        probe = [tf.constant([blank[signature[name]]] * 2, dtype=tf_types[signature[name]]) for name in order]
        got, expected = call._call_flat(probe, call.captured_inputs), fn._call_flat(probe, fn.captured_inputs)
        same = got.keys() == expected.keys() and all(
            np.array_equal(got[k].numpy(), expected[k].numpy()) for k in expected)
    except Exception:  # noqa: BLE001 - any failure: the default executor, as without this
        return None
    return call if same else None


class DirectCall:
    """`fn` called flat as TensorFlow's eager runtime calls a function in the end, less the Python
    around it that a server's call needs none of (direct_call): each input made by the constructor
    tf.constant ends in (EagerTensor, the same conversion) without the copy it makes first, and the
    call handed to TFE_Py_Execute with the attributes the context gave calls when the model loaded,
    its outputs packed as `fn` packs them. Numpy arrays only (predict_arrays sends anything else the
    old way: EagerTensor would cast a tensor of another dtype that tf.constant refuses). An input
    tensor shares its array's memory, and an output a function passes through shares it too:
    predict_arrays hands back each output's .numpy(), a copy, and no caller changes an array while
    its call runs."""

    def __init__(self, fn, tf_types: list, parts: dict):
        self.fn = fn
        self._enums = [dtype.as_datatype_enum for dtype in tf_types]
        self.__dict__.update(parts)

    def __call__(self, arrays: list) -> dict:
        ctx, make = self._ctx, self._make
        device = ctx.device_name  # the calling thread's device scope, as tf.constant takes it
        inputs = [make(values, device, enum) for values, enum in zip(arrays, self._enums)]
        inputs += self._captured
        return self._pack(self._execute(ctx._handle, device, self._name, inputs, self._attrs, self._outputs))


def direct_call(tf, fn, order: list[str], tf_types: dict, signature: dict[str, str]) -> DirectCall | None:
    """A DirectCall of `fn` (called flat with its inputs in `order`), or None where this TensorFlow lacks
    one of its parts, the function has outputs or captures it does not cover (resource handles,
    control dependencies), or it answers a probe row otherwise than fn._call_flat does.

    tf.constant checks its arguments and copies each array before it reaches EagerTensor, and
    fn._call_flat asks about gradient tapes and enters three context managers before the same
    execute: at one instance a request, tf.constant and that Python took about 40% of predict_arrays
    (750 us against 510 us direct, in one process on this 2-core machine)."""
    try:
        from tensorflow.python import pywrap_tfe
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        atomic = fn._inference_function
        function_type = atomic.function_type
        if atomic._call_options.control_captures or any(
                output.dtype._handle_data for output in function_type.flat_outputs):
            return None
        ctx = context.context()
        ctx.ensure_initialized()
        options = ctx.function_call_options.as_attrs()
        call = DirectCall(fn, [tf_types[signature[name]] for name in order], {
            "_ctx": ctx, "_make": ops.EagerTensor, "_execute": pywrap_tfe.TFE_Py_Execute,
            "_name": atomic.name.decode(), "_outputs": len(function_type.flat_outputs),
            "_attrs": tuple(item for pair in options.items() for item in pair), "_pack": function_type.pack_output,
            "_captured": list(fn.captured_inputs)})
        blank = {"float32": 0.0, "int64": 0, "string": ""}
        probe = [np.array([blank[signature[name]]] * 2, dtype=object if signature[name] == "string" else
                          signature[name]) for name in order]
        got = call(probe)
        expected = fn._call_flat([tf.constant(values, dtype=tf_types[signature[name]]) for values, name in
                                  zip(probe, order)], fn.captured_inputs)
        same = got.keys() == expected.keys() and all(
            got[k].dtype == expected[k].dtype and np.array_equal(got[k].numpy(), expected[k].numpy()) for k in expected)
    except Exception:  # noqa: BLE001 - any failure: the call through tf.constant and fn, as without this
        return None
    return call if same else None


class LoadedModel:
    """An exported model with its kfkit metadata and serving function."""

    def __init__(self, model_dir: str | Path):
        tf = tensorflow_runtime()
        self._tf = tf
        self.model_dir = local_path(model_dir)
        self.spec = ModelSpec.load(self.model_dir)
        self._loaded = tf.saved_model.load(str(self.model_dir))
        self.fn = self._loaded.signatures["serving_default"]
        self._tf_types = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
        self._flat_order = flat_call_order(self.fn, self.signature, self._tf_types)
        # what predict_arrays calls flat: on a server's one intra-op thread (serving_threads), the
        # whole function runs on the calling thread too
        self._flat_fn = self.fn
        if self._flat_order is not None and tf.config.threading.get_intra_op_parallelism_threads() == 1:
            self._flat_fn = on_calling_thread(tf, self.fn, self._flat_order, self._tf_types, self.signature) or self.fn
        self._direct = None if self._flat_order is None else direct_call(
            tf, self._flat_fn, self._flat_order, self._tf_types, self.signature)

    @property
    def signature(self) -> dict[str, str]:
        return self.spec.signature

    def predict_arrays(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        constant, tf_types, signature = self._tf.constant, self._tf_types, self.signature
        order = self._flat_order
        if order is None:
            tensors = {name: constant(features[name], dtype=tf_types[dtype]) for name, dtype in signature.items()}
            outputs = self.fn(**tensors)
        else:
            fn, direct, outputs = self._flat_fn, self._direct, None
            arrays = [features[name] for name in order]
            if direct is not None and direct.fn is fn and all(type(values) is np.ndarray for values in arrays):
                try:
                    outputs = direct(arrays)
                except Exception:  # noqa: BLE001 - called again below, for the error TensorFlow names it with
                    outputs = None
            if outputs is None:
                outputs = fn._call_flat([constant(values, dtype=tf_types[signature[name]]) for values, name in
                                         zip(arrays, order)], fn.captured_inputs)
        return {k: v.numpy() for k, v in outputs.items()}

    def predict_table(self, table) -> dict[str, np.ndarray]:
        return self.predict_arrays(features_to_numpy(table, self.spec))

    def predict_instances(self, instances: list[Any]) -> list[dict[str, Any]]:
        return self._rows(self.predict_arrays(instances_to_arrays(instances, self.signature)), len(instances))

    def predict_instance_lists(self, lists: list[list[Any]]) -> list[list[dict[str, Any]] | Exception]:
        """predict_instances of each list, the valid ones in one call of the model (a server's
        concurrent requests): each list's rows, or its RequestError. A model whose outputs are not
        one row per instance, or a call that fails, has each list predicted on its own instead."""
        results: list[Any] = [None] * len(lists)
        arrays = {}
        for i, instances in enumerate(lists):
            try:
                arrays[i] = instances_to_arrays(instances, self.signature)
            except RequestError as exc:
                results[i] = exc
        counts = {i: len(lists[i]) for i in arrays}
        total = sum(counts.values())
        try:
            outputs = self.predict_arrays({name: np.concatenate([arrays[i][name] for i in arrays])
                                           for name in self.signature}) if len(arrays) > 1 else None
        except Exception:  # noqa: BLE001 - each list again on its own: its own answer or error
            outputs = None
        if outputs is None or not all(v.ndim >= 1 and len(v) == total for v in outputs.values()):
            for i in arrays:
                try:
                    results[i] = self._rows(self.predict_arrays(arrays[i]), counts[i])
                except Exception as exc:  # noqa: BLE001 - one list's failure is its own
                    results[i] = exc
            return results
        start = 0
        for i, count in counts.items():
            results[i] = self._rows({k: v[start:start + count] for k, v in outputs.items()}, count)
            start += count
        return results

    def _rows(self, outputs: dict[str, np.ndarray], count: int) -> list[dict[str, Any]]:
        rows = _rows_fast(outputs, count)
        if rows is not None:
            return rows
        predictions = []
        for i in range(count):
            row = {}
            for name, values in outputs.items():
                value = values[i]
                if isinstance(value, bytes):
                    value = value.decode()
                elif isinstance(value, np.ndarray):
                    value = value.tolist()
                elif isinstance(value, np.generic):
                    value = value.item()
                row[name] = value
            predictions.append(row)
        return predictions
