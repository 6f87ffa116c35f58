"""How often the claims' verdicts are wrong or missed, on simulated run tables whose truth is known.

Each simulated sweep gives every claim of :data:`probe.analyses.claims.CLAIMS` a metric = level + effect x (position
of the rate in [0, 1]) + seed noise, the noise's standard deviation ``sd`` expressed in units of the claim's floor
(0.02, or 10% of the level for norms), and judges it with :func:`probe.analyses.claims.evaluate_claims` (999
permutations, t-intervals). It prints, per design (rates x seeds):

- ``false agrees``: the share of sweeps without any effect in which some claim of the report agrees (the
  family-wise error rate of the Holm-adjusted verdicts; the target is 5%);
- ``power``: the share of claims that agree when every claim rises by ``k`` seed standard deviations across the range,
  and when only one does (the others flat: Holm's first step then asks p <= 0.05 / 11);
- ``vanishes``: the share of claims whose control says ``vanishes`` when the fixed sweep rises by 3 floors and the
  matched sweep is flat, for seed noise of 1/4, 1/2 and 1 floor.

Not part of the test suite (tests/analyses/test_claims.py asserts the acceptance figures at 5 rates x 3 seeds);
about a minute on 2 CPU cores with the default 200 sweeps per cell.

    python benchmarks/bench_claims_calibration.py [--sweeps 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from probe.analyses.claims import CLAIMS, evaluate_claims

LEVEL = {c.name: (5.0 if c.relative_floor else 0.5) for c in CLAIMS}


def sweep_table(rng, rates, seeds, effect_in_sd, sd_in_floors, budget="fixed", effect_claims=None) -> pd.DataFrame:
    rows = []
    pos = np.linspace(0, 1, len(rates))
    for i, lr in enumerate(rates):
        for s in range(seeds):
            row = {"run": f"{budget}-{lr}-{s}", "lr": lr, "seed": s, "budget": budget, "status": "ok"}
            for c in CLAIMS:
                sd = sd_in_floors * c.floor * (LEVEL[c.name] if c.relative_floor else 1.0)
                effect = effect_in_sd if effect_claims is None or c.name in effect_claims else 0.0
                row[c.column] = LEVEL[c.name] + effect * sd * pos[i] + rng.normal(0, sd)
                row[c.count_column] = 100
            rows.append(row)
    return pd.DataFrame(rows)


def judge(table: pd.DataFrame) -> pd.DataFrame:
    return evaluate_claims(table, n_permutations=999, n_bootstrap=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", type=int, default=200, help="simulated sweeps per cell")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    designs = [([0.01, 0.1, 1.0], 2), ([0.01, 0.03, 0.1, 0.3], 3), ([0.01, 0.03, 0.1, 0.3, 1.0], 2),
               ([0.01, 0.03, 0.1, 0.3, 1.0], 3), ([0.01, 0.03, 0.1, 0.3, 1.0], 5)]
    one = CLAIMS[0].name
    print(f"{'design':>16} {'false agrees':>13} {'power 2sd/all':>14} {'3sd/all':>8} {'3sd/one':>8} "
          f"{'5sd/one':>8} {'vanishes sd=1/4':>16} {'1/2':>6} {'1':>6}")
    for rates, seeds in designs:
        n = args.sweeps
        false_agrees = np.mean([(judge(sweep_table(rng, rates, seeds, 0.0, 1.0)).verdict == "agrees").any()
                                for _ in range(n)])
        power = {}
        for k, which in ((2.0, None), (3.0, None), (3.0, {one}), (5.0, {one})):
            hits = []
            for _ in range(n):
                result = judge(sweep_table(rng, rates, seeds, k, 1.0, effect_claims=which))
                judged = result if which is None else result[result.claim == one]
                hits.append((judged.verdict == "agrees").mean())
            power[(k, which is None)] = np.mean(hits)
        vanish = {}
        for sd in (0.25, 0.5, 1.0):
            hits = []
            for _ in range(n):
                table = pd.concat([sweep_table(rng, rates, seeds, 3.0 / sd, sd),
                                   sweep_table(rng, rates, seeds, 0.0, sd, budget="matched")], ignore_index=True)
                result = judge(table)
                hits.append((result.drop_duplicates("claim").survives_control == "vanishes").mean())
            vanish[sd] = np.mean(hits)
        print(f"{len(rates):>6} rates x {seeds} {false_agrees:>13.3f} {power[(2.0, True)]:>14.2f} "
              f"{power[(3.0, True)]:>8.2f} {power[(3.0, False)]:>8.2f} {power[(5.0, False)]:>8.2f} "
              f"{vanish[0.25]:>16.2f} {vanish[0.5]:>6.2f} {vanish[1.0]:>6.2f}")
    print(f"{args.sweeps} sweeps per cell, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
