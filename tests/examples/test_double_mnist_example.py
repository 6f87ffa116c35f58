"""examples/double_mnist_sweep.sh is ``probe demo`` with the command line: the same two sweeps (so its second run's
``probe sweep --resume`` is accepted: the check below is the one it makes), the verdicts stored below wherever the
demo's verdicts do not depend on the seeds, and what the README says of it. That a script of this pattern runs again
in the same folder, reusing what is there, is tests/examples/test_plugin_example.py's test."""

from __future__ import annotations

import pandas as pd
import pytest

from probe.demo import FULL, sweep_arguments
from probe.train.sweep import check_sweep_resume
from tests.examples.helpers import run_script

#: (claim, budget, rates) -> verdict, for every scope where the demo gave the same verdict with seeds 0-2, 3-5 and 6-8
#: (2026-11-28). Left out because they changed with the seeds: probe_core_up (fixed: no effect / cannot tell; fixed
#: over the matched rates), probe_gap_up (matched budget: no effect / cannot tell; fixed over the matched rates:
#: agrees / cannot tell), early_logit_norm_up (fixed: agrees / cannot tell; fixed over the matched rates).
STABLE_VERDICTS = {
    ("unbiased_acc_up", "fixed", "all"): "agrees",
    ("unbiased_acc_up", "matched", "all"): "cannot tell",
    ("unbiased_acc_up", "fixed", "matched"): "agrees",
    ("wga_up", "fixed", "all"): "agrees",
    ("wga_up", "matched", "all"): "cannot tell",
    ("wga_up", "fixed", "matched"): "agrees",
    ("retention_up", "fixed", "all"): "cannot tell",
    ("retention_up", "matched", "all"): "cannot tell",
    ("retention_up", "fixed", "matched"): "cannot tell",
    ("activation_sparsity_up", "fixed", "all"): "cannot tell",
    ("activation_sparsity_up", "matched", "all"): "cannot tell",
    ("activation_sparsity_up", "fixed", "matched"): "cannot tell",
    ("probe_core_up", "matched", "all"): "cannot tell",
    ("probe_gap_up", "fixed", "all"): "agrees",
    ("class_separation_up", "fixed", "all"): "agrees",
    ("class_separation_up", "matched", "all"): "cannot tell",
    ("class_separation_up", "fixed", "matched"): "agrees",
    ("core_attr_share_up", "fixed", "all"): "agrees",
    ("core_attr_share_up", "matched", "all"): "cannot tell",
    ("core_attr_share_up", "fixed", "matched"): "agrees",
    ("early_logit_norm_up", "matched", "all"): "cannot tell",
    ("early_cmr_up", "fixed", "all"): "not measurable",
    ("early_cmr_up", "matched", "all"): "no effect",
    ("early_cmr_up", "fixed", "matched"): "not measurable",
    ("early_bc_loss_share_up", "fixed", "all"): "no effect",
    ("early_bc_loss_share_up", "matched", "all"): "cannot tell",
    ("early_bc_loss_share_up", "fixed", "matched"): "no effect",
}


@pytest.mark.slow(seconds=85)
def test_double_mnist_example_is_the_demo_and_gives_its_verdicts(tmp_path):
    res = run_script("double_mnist_sweep.sh", "checkpoints/dm", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    sweeps = tmp_path / "checkpoints" / "dm"
    for budget in ("fixed", "matched"):  # the demo's sweeps: raises naming any option that differs
        base, axes, steps = sweep_arguments(FULL, budget)
        check_sweep_resume(sweeps / budget, base, axes, budget=budget, steps=steps)

    analysis = tmp_path / "analyses" / "dm"
    claims = pd.read_csv(analysis / "claims.csv", keep_default_na=False)
    verdicts = {(c, b, r): v for c, b, r, v in claims[["claim", "budget", "rates", "verdict"]].itertuples(index=False)}
    assert {k: verdicts.get(k) for k in STABLE_VERDICTS} == STABLE_VERDICTS
    assert "disagrees" not in set(verdicts.values())
    not_measurable = claims[claims["verdict"] == "not measurable"]
    assert set(not_measurable["claim"]) == {"early_cmr_up"}
    assert not_measurable["reason"].str.contains("the same value").all()

    # what the README says: IG moves from the right (spurious) digit to the left (core) one as the rate rises
    runs = pd.read_csv(analysis / "runs.csv")
    share = runs[runs["budget"] == "fixed"].groupby("lr")["final:test/core_attr_share@ig"].mean()
    assert share.iloc[0] < 0.3 and share.iloc[2:].min() > 0.5
    assert list((analysis / "attributions").glob("*_ig_bc_test.png"))
