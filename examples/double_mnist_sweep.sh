#!/usr/bin/env bash
# `probe demo` with the command line: a learning-rate sweep on Double MNIST (dim core digit on the left, bright
# spurious digit on the right) with the MLP, its matched-budget twin, the analysis of both and attribution heatmaps.
# The same runs as the demo, so the same verdicts. The core region is a mask here, so core_attr_share is measured.
# 4 rates x 3 seeds: with fewer runs no claim can reach significance after the Holm adjustment over 11 claims.
# About 80 s on 2 CPU cores with the embedded digits; pass --data-root DIR (MNIST IDX files) to the sweeps for 28x56
# images. Run again, it reuses what is already trained and analysed.
set -euo pipefail
out=${1:-checkpoints/double_mnist}
data=(--dataset double-mnist --data-option n_train=4000 --data-option max_eval_digits=1000)
model=(--model mlp --model-option width=256 --model-option depth=2)
common=(--seeds 0 1 2 --batch-size 64 --record log:8 --device cpu --threads 1 --jobs 2 --quiet)
resume() { if [[ -f "$1/sweep.json" ]]; then echo --resume; fi; }

probe sweep "${data[@]}" "${model[@]}" "${common[@]}" --lr 0.01 0.03 0.1 0.3 --steps 1000 \
            --out "$out/fixed" $(resume "$out/fixed")
probe sweep "${data[@]}" "${model[@]}" "${common[@]}" --lr 0.03 0.1 0.3 --budget matched --steps 500 \
            --out "$out/matched" $(resume "$out/matched")
# both sweeps at once (the claims then say whether they survive the control); the model analyses at the last epoch,
# 64 samples attributed, the linear probes without deep feature reweighting (probe analyze runs it by default)
probe analyze "$out" --model-epochs last --option dfr_retrains=0 --option attr_n=64
probe attribute "$out/fixed" --method ig saliency --samples bc --n 8 --out "analyses/$(basename "$out")/attributions"
