"""Comparing prediction answers made in different model calls.

A request predicted together with others (one model call for the requests read in one turn of the
server's loop) gets the classes, fields and statuses it gets alone, and scores equal to float32
rounding: TensorFlow's CPU kernels may sum a batch of 2 in another order than a batch of 1 (on
AMD EPYC with TF 2.21 a score of 1.58e-06 came back 1.5822112e-06 alone and 1.5822127e-06 in a pair).
"""

from __future__ import annotations

import pytest

# float32 carries about 7 significant digits; a softmax of logits off by an ulp moves a small score
# by a few parts in a million, while two different instances' scores differ far more
SCORE_REL = 1e-5


def as_answered(payload):
    """`payload` with each float a pytest.approx of it, the rest as is: `got == as_answered(alone)`
    holds when `got` differs from `alone` only by float rounding."""
    if isinstance(payload, float):
        return pytest.approx(payload, rel=SCORE_REL, abs=1e-12)
    if isinstance(payload, dict):
        return {key: as_answered(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return type(payload)(as_answered(value) for value in payload)
    return payload
