"""Decision quality of the canary analysis on simulated traffic: false rollbacks and caught degradations.

    python benchmarks/canary.py [--trials 100] [--sizes 200,1000,5000]

Each trial draws both sides' requests from the same machine: latencies lognormal around 8 ms
(sigma 0.3), each request at a time in a 600 s window, with this machine's kind of noise (three
one-second slow spells of 3-10x, 0.5% of the time, hitting both sides' requests then; at 1% the
spells are the p99 itself, and no model's tail can be seen under them), a 1% base error rate, and a
classifier's answers over three classes (50/30/20%).
Scenarios: A/A (the same model on both sides), A/A with the canary's traffic ramped up (80% of it in
the window's second half, while the whole machine runs 2x slower: only a comparison within time
slices keeps that off the canary), errors x2 (2% against 1%), p99 +50% (the slowest 5% of the
model's latencies x1.5, the median unchanged), a 10-point shift in the predicted class mix
(40/30/30), and the old rules' two worst cases. The analysis runs with its defaults (kfkit.components.canary.analysis.Thresholds).
Prints, per scenario and requests per side, the share of trials rolled back, promoted and
inconclusive; then the fewest requests per side at which each degradation was caught in >= 95% of trials.
Targets: A/A rolled back <= 1% at every size; each degradation caught >= 95% at a documented size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kfkit.components.canary.analysis import PROMOTE, ROLLBACK, Served, analyze  # noqa: E402

CLASSES = np.array(["a", "b", "c"])


WINDOW_S = 600.0


def machine(rng) -> tuple[np.ndarray, np.ndarray]:
    """The shared machine's slow spells in one window: three one-second spells (0.5% of the time)
    of 3-10x, hitting whatever either side serves then."""
    return rng.uniform(0, WINDOW_S - 1, 3), rng.uniform(3, 10, 3)


def side(rng, name: str, n: int, spells, *, error_rate=0.01, tail=1.0, mix=(0.5, 0.3, 0.2), late=0.0,
         busy_late=1.0) -> Served:
    """`late`: the share of this side's requests in the window's second half (a canary whose traffic
    ramps up); `busy_late`: the machine's slowdown then (both sides)."""
    times = np.where(rng.random(n) < (late or 0.5), rng.uniform(WINDOW_S / 2, WINDOW_S, n),
                     rng.uniform(0, WINDOW_S / 2, n))
    latencies = np.exp(rng.normal(np.log(8.0), 0.3, n))
    # a slower tail: the slowest 5% of the model's own latencies take `tail` times as long
    latencies[latencies > np.exp(np.log(8.0) + 1.645 * 0.3)] *= tail
    starts, factors = spells
    for start, factor in zip(starts, factors):
        latencies[(times >= start) & (times < start + 1.0)] *= factor
    latencies[times >= WINDOW_S / 2] *= busy_late
    order = np.argsort(times)  # a log is in time order
    times, latencies = times[order], latencies[order]
    errors = int((rng.random(n) < error_rate).sum())
    answered = n - errors
    predictions = list(CLASSES[rng.choice(3, answered, p=list(mix))])
    return Served(name, requests=n, errors=errors, latencies_ms=latencies.tolist(), latency_times=times.tolist(),
                  predictions=predictions)


SCENARIOS = {
    "A/A": {},
    "A/A, canary ramped into a slow spell": {"late": 0.8, "busy_late": 2.0},
    "A/A, the same, pooled window (no time slices)": {"late": 0.8, "busy_late": 2.0, "pooled": True},
    "errors x2 (1% -> 2%)": {"error_rate": 0.02},
    "p99 +50% (median same)": {"tail": 1.5},
    "class mix shifted 10 points": {"mix": (0.4, 0.3, 0.3)},
}


def trial(rng, n: int, canary_kwargs: dict, seed: int) -> str:
    spells = machine(rng)
    canary_kwargs = dict(canary_kwargs)
    pooled = canary_kwargs.pop("pooled", False)
    busy = {"busy_late": canary_kwargs["busy_late"]} if "busy_late" in canary_kwargs else {}
    canary = side(rng, "canary", n, spells, **canary_kwargs)
    baseline = side(rng, "baseline", n, spells, **busy)
    if pooled:  # as a service that hands out no request times would be judged
        canary.latency_times, baseline.latency_times = [], []
    return analyze(canary, baseline, seed=seed).verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--aa-trials", type=int, default=300)
    parser.add_argument("--sizes", default="200,1000,5000,10000,20000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(20261205)
    started = time.perf_counter()
    print(f"{'scenario':<44} {'requests/side':>13} {'rolled back':>12} {'promoted':>9} {'inconclusive':>13}")
    caught_at: dict[str, int | None] = {}
    for name, kwargs in SCENARIOS.items():
        trials = args.aa_trials if name.startswith("A/A") else args.trials
        caught_at[name] = None
        for n in sizes:
            verdicts = [trial(rng, n, kwargs, seed=i) for i in range(trials)]
            rolled = verdicts.count(ROLLBACK) / trials
            promoted = verdicts.count(PROMOTE) / trials
            undecided = verdicts.count("inconclusive") / trials
            print(f"{name:<44} {n:>13} {rolled:>11.1%} {promoted:>9.1%} {undecided:>12.1%}")
            if not name.startswith("A/A") and rolled >= 0.95 and caught_at[name] is None:
                caught_at[name] = n
    # the two cases the old raw thresholds got wrong
    old = [("1.4% vs 0.5% errors, 20,000 each", Served("c", 20000, 280, [8.0] * 20000, ["a"] * 19720),
            Served("b", 20000, 100, [8.0] * 20000, ["a"] * 19900)),
           ("7/100 vs 6/100 errors", Served("c", 100, 7, [8.0] * 100, ["a"] * 93),
            Served("b", 100, 6, [8.0] * 100, ["a"] * 94))]
    for label, c, b in old:
        print(f"{label:<44} {'':>13} verdict: {analyze(c, b).verdict}")
    print("caught in >= 95% of trials from: " + "; ".join(
        f"{name}: {n if n else 'not within ' + str(sizes[-1])} requests per side" for name, n in caught_at.items()
        if not name.startswith("A/A")))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
