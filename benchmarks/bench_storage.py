"""Bytes on disk per epoch and per run, next to what they hold.

1. ResNet-50 (23.5M parameters with a 2-class head) on a Waterbirds-size training split (4795 samples): the bytes
   of one epoch file (weights and per-sample records) against its float32 weights plus the records' arrays (target
   <= 1.05x), the bytes of the resume file with SGD momentum and with AdamW's two moments, and what a 5-rate x
   3-seed sweep recording 100 epochs costs in schema 1 (every epoch file with optimizer state) against schema 2
   with ``--keep-weights all`` and ``--keep-weights log:10``.
2. Logits of 1000 classes: bytes per sample of the logit fields in full (float32, float16) and as ``topk:5``, from
   arrays encoded the way the trainer encodes them, and per epoch of an ImageNet-size split (1.28M samples).

Every figure is measured from HDF5 images built in memory by the writer's own code (nothing is written to disk).
Not part of the test suite; about half a minute on 2 CPU cores.

    python benchmarks/bench_storage.py
"""

from __future__ import annotations

import numpy as np
import torch

from probe.models import build_model
from probe.store.epoch_file import EpochPayload, ResumePayload, epoch_file_image, resume_file_image
from probe.store.logit_records import bytes_per_sample, encode_logits

WATERBIRDS_TRAIN = 4795
IMAGENET_TRAIN = 1_281_167


def records(n: int, num_classes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, num_classes, n)
    return {"index": np.arange(n), "y": y, "a": y % 2, "group": y * 2 + y % 2, "is_bc": np.zeros(n, bool),
            "logits": rng.normal(size=(n, num_classes)).astype(np.float32), "loss": rng.random(n).astype(np.float32)}


def optimizer_state(model: torch.nn.Module, name: str) -> dict:
    """The state dict of ``name`` after one step (so that momentum or the moments exist)."""
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9) if name == "sgd" else torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    return opt.state_dict()


def main() -> None:
    torch.manual_seed(0)
    model = build_model("resnet50", (3, 224, 224), 2)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    weights = sum(v.numel() * v.element_size() for v in state.values())
    rec = {"train": records(WATERBIRDS_TRAIN, 2)}
    rec_bytes = sum(a.nbytes for a in rec["train"].values())
    epoch = len(epoch_file_image(EpochPayload(epoch=1, global_step=1, lr=0.1, model_state=state, records=rec)))
    rng = {"shuffle": torch.Generator().get_state(), "torch_cpu": torch.get_rng_state()}
    resume = {name: len(resume_file_image(ResumePayload(epoch=1, global_step=1, rng_states=rng,
                                                        optimizer_state=optimizer_state(model, name))))
              for name in ("sgd", "adamw")}
    ratio = epoch / (weights + rec_bytes)
    print(f"ResNet-50 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"{WATERBIRDS_TRAIN} training records")
    print(f"  float32 weights (state dict)          {weights / 1e6:9.1f} MB")
    print(f"  records                               {rec_bytes / 1e6:9.2f} MB")
    print(f"  epoch file                            {epoch / 1e6:9.1f} MB   {ratio:.3f}x weights + records "
          f"(target <= 1.05: {'PASS' if ratio <= 1.05 else 'MISS'})")
    print(f"  resume file, SGD momentum             {resume['sgd'] / 1e6:9.1f} MB   (one per run)")
    print(f"  resume file, AdamW                    {resume['adamw'] / 1e6:9.1f} MB   (one per run)")
    runs, epochs = 15, 100
    schema1 = runs * (epochs + 1) * (epoch + resume["sgd"])  # every file held the optimizer state too
    schema2_all = runs * ((epochs + 1) * epoch + resume["sgd"])
    log_kept = len({int(round(v)) for v in np.geomspace(1, epochs, 10)} | {0, epochs})
    schema2_log = runs * ((epochs + 1) * rec_bytes + log_kept * (epoch - rec_bytes) + resume["sgd"])
    print(f"  5 rates x 3 seeds x 100 epochs, SGD:  schema 1 {schema1 / 1e9:6.0f} GB | schema 2 keep-weights all "
          f"{schema2_all / 1e9:6.0f} GB | keep-weights log:10 ({log_kept} epochs) {schema2_log / 1e9:6.1f} GB")

    print("\nLogits of 1000 classes, bytes per sample (full-logits subset of topk not counted)")
    n = 4096
    logits, y = torch.randn(n, 1000), torch.randint(0, 1000, (n,))
    for label, topk, dtype in (("full float32", None, "float32"), ("full float16", None, "float16"),
                               ("topk:5", 5, "float32")):
        fields = encode_logits(logits, y, np.zeros(n, np.int64), topk=topk, dtype=dtype, subset=False)
        per_sample = sum(a.nbytes for a in fields.values()) / n
        assert per_sample == bytes_per_sample(1000, topk=topk, dtype=dtype)
        print(f"  {label:14s} {per_sample:7.0f} B/sample   {per_sample * IMAGENET_TRAIN / 1e9:6.2f} GB per epoch of "
              f"ImageNet's training split")


if __name__ == "__main__":
    main()
