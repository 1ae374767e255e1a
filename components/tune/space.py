"""A tuning search space: which of train's hyperparameters vary, and over what.

Written as YAML or JSON, one entry per hyperparameter train accepts:

    learning_rate: {type: float, low: 0.0001, high: 0.1, log: true}
    batch_size:    {type: categorical, choices: [32, 64, 128]}
    hidden_units:  {type: categorical, choices: [[64, 32], [128, 64], [32]]}
    dropout:       {type: float, low: 0.0, high: 0.5}
    epochs:        {type: int, low: 5, high: 40}

`float` and `int` are ranges (low and high included; `log: true` samples on a log scale, low > 0),
`categorical` a list of choices. hidden_units (a list of layer widths) can only be categorical.
Anything else is refused naming the entry: a typo in a space would otherwise tune nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from kfkit.errors import ConfigError

# train's hyperparameters and their types (components/train/train.py Hyperparameters, less the seed)
TUNABLE = {"hidden_units": list, "learning_rate": float, "epochs": int, "batch_size": int, "patience": int,
           "dropout": float}
KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = field(default_factory=tuple)

    def encoded_choices(self) -> list[Any]:
        """Choices as Optuna and Vizier take them: scalars; a layer list as "64,32"."""
        return [encode(c) for c in self.choices]


def encode(value: Any) -> Any:
    return ",".join(str(int(u)) for u in value) if isinstance(value, (list, tuple)) else value


def decode(name: str, value: Any) -> Any:
    """A sampled value back in train's type ("64,32" -> [64, 32] for hidden_units)."""
    if name == "hidden_units":
        return [int(u) for u in str(value).split(",")] if isinstance(value, str) else [int(u) for u in value]
    if TUNABLE[name] is int:
        return int(round(float(value)))
    return float(value)


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"search space {name}: {key} must be a finite number, got {value!r}")
    return float(value)


def _dimension(name: str, spec: Any) -> Dimension:
    if name not in TUNABLE:
        raise ConfigError(f"search space names {name!r}, which train does not take; tunable: {', '.join(TUNABLE)}")
    if not isinstance(spec, dict):
        raise ConfigError(f"search space {name}: expected a mapping with a type, got {spec!r}")
    unknown = set(spec) - {"type", "low", "high", "log", "choices"}
    if unknown:
        raise ConfigError(f"search space {name}: unknown key(s) {', '.join(sorted(unknown))}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"search space {name}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"search space {name}: categorical needs a non-empty list of choices")
        for choice in choices:
            if name == "hidden_units":
                if not (isinstance(choice, list) and choice and all(isinstance(u, int) and not isinstance(u, bool)
                                                                     and u > 0 for u in choice)):
                    raise ConfigError(f"search space hidden_units: each choice must be a list of positive layer "
                                      f"widths, got {choice!r}")
            elif TUNABLE[name] is int and not (isinstance(choice, int) and not isinstance(choice, bool)):
                raise ConfigError(f"search space {name}: choices must be integers, got {choice!r}")
            elif TUNABLE[name] is float:
                _number(name, "choice", choice)
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ConfigError(f"search space {name}: choices repeat")
        return Dimension(name, kind, choices=tuple(tuple(c) if isinstance(c, list) else c for c in choices))
    if name == "hidden_units":
        raise ConfigError("search space hidden_units: only categorical (a list of layer-width lists), e.g. "
                          "{type: categorical, choices: [[64, 32], [128]]}")
    if kind == "int" and TUNABLE[name] is float:
        raise ConfigError(f"search space {name}: is a float in train; use type float")
    if kind == "float" and TUNABLE[name] is int:
        raise ConfigError(f"search space {name}: is an integer in train; use type int")
    low, high = _number(name, "low", spec.get("low")), _number(name, "high", spec.get("high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"search space {name}: log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"search space {name}: low must be below high, got {low:g} and {high:g}")
    if log and low <= 0:
        raise ConfigError(f"search space {name}: a log scale needs low > 0, got {low:g}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"search space {name}: int bounds must be whole numbers, got {low:g} and {high:g}")
    return Dimension(name, kind, low, high, log)


def parse_space(text: str | dict) -> list[Dimension]:
    """The search space from YAML or JSON text (or an already parsed mapping)."""
    if isinstance(text, str):
        import yaml

        try:
            spec = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"search space is neither YAML nor JSON: {err}") from None
    else:
        spec = text
    if not isinstance(spec, dict) or not spec:
        raise ConfigError("search space is empty: give at least one hyperparameter, e.g. "
                          "'learning_rate: {type: float, low: 0.0001, high: 0.1, log: true}'")
    return [_dimension(str(name), value) for name, value in spec.items()]
