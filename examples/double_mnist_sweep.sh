#!/usr/bin/env bash
# A learning-rate sweep on Double MNIST (dim core digit on the left, bright spurious digit on the right) with the
# MLP, then the analysis and attribution heatmaps. The core region is a mask here, so core_attr_share is measured.
# About 40 s on 2 CPU cores with the embedded digits; pass --data-root DIR (MNIST IDX files) for 28x56 images.
set -euo pipefail
out=${1:-checkpoints/double_mnist}
probe sweep --dataset double-mnist --model mlp --lr 0.01 0.1 0.3 --seeds 0 1 --steps 1000 --record log:10 \
            --threads 1 --out "$out"
probe analyze "$out" --model-epochs last
probe attribute "$out" --method ig saliency --samples bc --n 8
