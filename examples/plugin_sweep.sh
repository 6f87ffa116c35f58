#!/usr/bin/env bash
# A learning-rate sweep on a dataset and a model of your own (examples/plugin_example.py registers "bars" and
# "plain-mlp"), then the analysis and attribution heatmaps. run.json records the plugin module, so the last two
# commands import it again by name: only PYTHONPATH has to reach it. About 30 s on 2 CPU cores.
# Run again, it reuses what is already trained and analysed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
out=${1:-checkpoints/bars}
resume=()
if [[ -f "$out/sweep.json" ]]; then resume=(--resume); fi
probe sweep --plugin plugin_example --dataset bars --model plain-mlp --lr 0.03 0.3 --seeds 0 1 --epochs 8 \
            --record log:4 --threads 1 --out "$out" "${resume[@]}"
probe analyze "$out" --model-epochs last
probe attribute "$out" --method ig saliency --samples bc --n 8
