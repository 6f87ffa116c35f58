"""Fuzzing the epoch-file and resume-file readers: hundreds of mutated copies of a real epoch file (and of a real
resume file), each read through the public API (``records``, ``sgd_records``, ``state_dict``; ``resume_state``).

Every read must give either the right arrays or a typed :class:`~probe.errors.ProbeError`; never another exception,
a hang or a crash. Mutations: bit flips and byte garbage anywhere in the file, truncations, appended bytes, and
structural edits made with h5py (wrong shapes and dtypes, external and soft links, external storage, virtual
datasets, huge declared datasets, deleted groups and fields, wrong attributes, out-of-range values).

Each mutated file is read with ``manifest.json`` updated to its size and sha256 (a forger's file: the HDF5 safety
walk and the record checks must catch it), and every fifth one also with the manifest left alone (the hash must).
"The right arrays" are the original ones, except for a flip inside a dataset's raw bytes: that dataset then holds
the flipped bytes (and reading them is right), computed independently from the original layout.

The loop runs in a subprocess (``python -m tests.store.test_fuzz RUN epoch|resume``), so a segfault fails the test
instead of
killing pytest; ``signal.alarm`` bounds each file and ``faulthandler`` kills a process stuck in C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

SECONDS_PER_FILE = 10
MIN_FILES = 500


def fuzz(run: Path, tmp_path: Path, target: str) -> list[dict]:
    """Run the fuzz worker on a copy of ``run`` for ``target`` (``epoch`` or ``resume``); its outcomes."""
    from tests.conftest import REPO

    shm = Path("/dev/shm")  # hundreds of small writes: memory-backed when the machine has it (speed only)
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path) as scratch:
        run_dir = Path(scratch) / "run"
        shutil.copytree(run, run_dir)
        result = subprocess.run([sys.executable, "-m", "tests.store.test_fuzz", str(run_dir), target], cwd=REPO,
                                capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, f"fuzz worker died (exit code {result.returncode}): {result.stderr[-3000:]}"
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.slow
def test_fuzzed_resume_files_give_the_right_state_or_a_typed_error(tiny_parity_run, tmp_path):
    outcomes = fuzz(tiny_parity_run, tmp_path, "resume")
    bad = [o for o in outcomes if o["verdict"] not in ("right arrays", "typed error")]
    assert not bad, f"{len(bad)} wrong reads, e.g. {bad[:5]}"
    assert len({o["file"] for o in outcomes}) >= 250
    assert all(o["error"] == "CorruptEpochError" for o in outcomes if not o["manifest_updated"])
    vouched = Counter(o["verdict"] for o in outcomes if o["manifest_updated"])
    assert vouched["typed error"] >= 50 and vouched["right arrays"] >= 20, vouched


@pytest.mark.slow
def test_fuzzed_epoch_files_give_the_right_arrays_or_a_typed_error(tiny_parity_run, tmp_path):
    outcomes = fuzz(tiny_parity_run, tmp_path, "epoch")
    bad = [o for o in outcomes if o["verdict"] not in ("right arrays", "typed error")]
    assert not bad, f"{len(bad)} wrong reads, e.g. {bad[:5]}"
    files = {o["file"] for o in outcomes}
    assert len(files) >= MIN_FILES
    kinds = Counter(o["file"].split(":")[0] for o in outcomes)
    for kind in ("flip", "garbage", "truncate", "append", "structure"):
        assert kinds[kind] >= 10, kinds
    unvouched = [o for o in outcomes if not o["manifest_updated"]]
    assert len(unvouched) >= MIN_FILES // 5
    assert all(o["error"] == "CorruptEpochError" for o in unvouched)  # the hash catches every change
    vouched = Counter(o["verdict"] for o in outcomes if o["manifest_updated"])
    assert vouched["typed error"] >= 200 and vouched["right arrays"] >= 20, vouched


# -- the worker (runs in its own process) ----------------------------------------------------------------------------

EPOCH = 1


def read_everything(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array of epoch ``EPOCH`` through the public reader, keyed by its HDF5 path."""
    import probe

    run = probe.open_run(run_dir)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        rec = run.records(split, EPOCH)
        for name in ("index", "y", "a", "group", "is_bc", "logits", "loss"):
            out[f"records/{split}/{name}"] = getattr(rec, name)
    sgd = run.sgd_records(EPOCH)
    for name in ("index", "y", "a", "group", "is_bc", "logits", "loss", "step"):
        out[f"sgd/{name}"] = getattr(sgd, name)
    out.update({f"model/{k}": v.numpy() for k, v in run.state_dict(EPOCH).items()})
    return out


def read_resume(run_dir: Path) -> dict[str, np.ndarray]:
    """The resume state through the public reader, keyed by its HDF5 path (the optimizer state as JSON bytes)."""
    import probe

    state = probe.open_run(run_dir).resume_state()
    out = {f"rng/{k}": v.numpy() for k, v in state.rng.items()}
    out["optimizer"] = np.frombuffer(json.dumps(state.optimizer_state, sort_keys=True, default=str).encode(),
                                     np.uint8)
    return out


def raw_layout(path: Path) -> list[tuple[str, int, int, np.dtype, tuple]]:
    """(name, offset, nbytes, dtype, shape) of every contiguous dataset of the original file."""
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.nbytes:
                out.append((name, obj.id.get_offset(), obj.nbytes, obj.dtype, obj.shape))
        f.visititems(visit)
    return out


def byte_mutations(original: bytes, layout, rng: np.random.Generator):
    """(label, bytes, dataset whose raw bytes changed or None); flips half in raw data, half elsewhere."""
    raw = np.zeros(len(original), bool)
    for _, off, nbytes, _, _ in layout:
        raw[off:off + nbytes] = True
    in_data, elsewhere = np.flatnonzero(raw), np.flatnonzero(~raw)
    for i in range(200):
        pool = in_data if i % 2 else elsewhere
        offset = int(pool[rng.integers(len(pool))])
        data = bytearray(original)
        data[offset] ^= 1 << int(rng.integers(8))
        yield f"flip:{offset}", bytes(data)
    for _ in range(40):
        offset = int(rng.integers(len(original) - 64))
        length = int(rng.integers(1, 64))
        data = bytearray(original)
        data[offset:offset + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        yield f"garbage:{offset}+{length}", bytes(data)
    for keep in [0, 1, 8, 512, 2048, len(original) - 1] + sorted(rng.integers(0, len(original), 24).tolist()):
        yield f"truncate:{keep}", original[:keep]
    for extra in (1, 7, 4096, *rng.integers(1, 100_000, 7).tolist()):
        yield f"append:{extra}", original + bytes(rng.integers(0, 256, extra, dtype=np.uint8))


def expected_after(label: str, data: bytes, original: bytes, original_arrays, layout, optimizer_json: bytes):
    """The right arrays for a byte mutation: the original ones, with any dataset whose raw bytes changed re-read
    from the mutated bytes directly (numpy, not HDF5). A change inside the optimizer's JSON attribute makes the
    optimizer state whatever that JSON now says (``None``: not compared)."""
    if not label.startswith(("flip", "garbage")):
        return original_arrays
    expected = dict(original_arrays)
    for name, off, nbytes, dtype, shape in layout:
        chunk = data[off:off + nbytes]
        if chunk != original[off:off + nbytes] and name in expected:
            expected[name] = np.frombuffer(chunk, dtype).reshape(shape)
    start = original.find(optimizer_json) if optimizer_json else -1
    if start >= 0 and data[start:start + len(optimizer_json)] != optimizer_json:
        expected["optimizer"] = None
    return expected


def structure_mutations(other_file: str):
    """(label, edit(f)) pairs; each edit changes an open copy of the original file."""
    splits = ("records/train", "records/val", "records/test", "sgd")
    fields = ("index", "y", "a", "group", "is_bc", "logits", "loss")

    def replace(name, make):
        def edit(f):
            del f[name]
            make(f, name)
        return edit

    def data(values):
        return lambda f, name: f.create_dataset(name, data=values)

    edits: list[tuple[str, object]] = []
    for s, split in enumerate(splits):
        n = 256 if split in ("records/train", "sgd") else 128
        for j, field in enumerate(fields):
            name = f"{split}/{field}"
            per_field = [
                (f"delete {name}", lambda f, name=name: f.__delitem__(name)),
                (f"{name} one longer", replace(name, data(np.zeros((n + 1, 2) if field == "logits" else n + 1)))),
                (f"{name} one shorter", replace(name, data(np.zeros((n - 1, 2) if field == "logits" else n - 1)))),
                (f"{name} as a column", replace(name, data(np.zeros((n, 1, 1) if field == "logits" else (n, 1))))),
                (f"{name} as a scalar", replace(name, data(np.float32(1)))),
                (f"{name} as strings", replace(name, data(np.array([b"ab"] * n)))),
                (f"{name} compound", replace(name, data(np.zeros(n, dtype=[("x", "f4"), ("y", "i4")])))),
                (f"{name} variable-length", replace(name, lambda f, name, n=n: f.create_dataset(
                    name, (n,), dtype=h5py.vlen_dtype(np.float32)))),
                (f"{name} external link", replace(name, lambda f, name: f.__setitem__(
                    name, h5py.ExternalLink(other_file, "/" + name)))),
                (f"{name} soft link", replace(name, lambda f, name, s=split: f.__setitem__(
                    name, h5py.SoftLink(f"/{s}/index")))),
                (f"{name} external storage", replace(name, lambda f, name, n=n: f.create_dataset(
                    name, (n,), dtype="f4", external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)]))),
                (f"{name} declared 3e8 x 10", replace(name, lambda f, name: f.create_dataset(
                    name, (300_000_000, 10), dtype="f4"))),
            ]
            edits += per_field[(s + j) % 2::2]  # every edit of every field, over two splits
            wrong_kind = np.zeros(n, np.float32) if field in ("index", "y", "a", "group") else np.zeros(n, np.int64)
            edits.append((f"{name} of the wrong kind", replace(name, data(wrong_kind))))
        edits += [
            (f"delete {split}", lambda f, s=split: f.__delitem__(s)),
            (f"{split}/logits width 3", replace(f"{split}/logits", data(np.zeros((n, 3), np.float32)))),
            (f"{split}/logits virtual", replace(f"{split}/logits", lambda f, name, n=n: f.create_virtual_dataset(
                name, _virtual_layout(other_file, name, (n, 2))))),
            (f"{split}/logits chunked 2^40", replace(f"{split}/logits", lambda f, name: f.create_dataset(
                name, (2**39, 2), dtype="f4", chunks=(1024, 2), compression="gzip"))),
            (f"{split}/y out of range", lambda f, s=split: f[f"{s}/y"].__setitem__(0, 7)),
            (f"{split}/a negative", lambda f, s=split: f[f"{s}/a"].__setitem__(0, -1)),
            (f"{split}/group inconsistent", lambda f, s=split: f[f"{s}/group"].__setitem__(0, 3 - f[f"{s}/group"][0])),
            (f"{split}/index negative", lambda f, s=split: f[f"{s}/index"].__setitem__(0, -5)),
            (f"{split} as a dataset", replace(split, data(np.zeros(3)))),
            (f"{split}/logits as a group", replace(f"{split}/logits", lambda f, name: f.create_group(name))),
            (f"{split}/loss contiguous copy, chunked", replace(f"{split}/loss", lambda f, name, n=n: f.create_dataset(
                name, data=np.zeros(n, np.float32), chunks=(16,)))),
        ]
    for group in ("records", "model"):
        edits.append((f"delete /{group}", lambda f, g=group: f.__delitem__(g)))
    edits += [
        ("model weight as external link", replace("model/head.weight", lambda f, name: f.__setitem__(
            name, h5py.ExternalLink(other_file, "/model/head.weight")))),
        ("model weight external storage", replace("model/head.weight", lambda f, name: f.create_dataset(
            name, (2, 32), dtype="f4", external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)]))),
        ("soft link at the root", lambda f: f.__setitem__("extra", h5py.SoftLink("/records"))),
        ("dangling external link at the root", lambda f: f.__setitem__("extra", h5py.ExternalLink("/nowhere", "/x"))),
        ("epoch attribute 2", lambda f: f.attrs.__setitem__("epoch", 2)),
        ("epoch attribute a string", lambda f: f.attrs.__setitem__("epoch", "one")),
        ("epoch attribute deleted", lambda f: f.attrs.__delitem__("epoch")),
        ("schema version 9.0", lambda f: f.attrs.__setitem__("schema_version", "9.0")),
        ("schema version garbage", lambda f: f.attrs.__setitem__("schema_version", "x.y")),
        ("schema version deleted", lambda f: f.attrs.__delitem__("schema_version")),
        ("compound attribute", lambda f: f.attrs.__setitem__("extra", np.zeros(2, dtype=[("x", "f4")]))),
        ("harmless extra attribute", lambda f: f.attrs.__setitem__("note", "hello")),
        ("harmless extra group", lambda f: f.create_group("notes")),
    ]
    return edits


def resume_mutations(other_file: str):
    """(label, edit(f)) pairs for the resume file."""
    def replace(name, make):
        def edit(f):
            del f[name]
            make(f, name)
        return edit

    edits: list[tuple[str, object]] = [(f"delete /{g}", lambda f, g=g: f.__delitem__(g))
                                       for g in ("rng", "optimizer", "optimizer/state", "rng/shuffle")]
    edits += [
        ("rng as 2^40 bytes", replace("rng/shuffle", lambda f, name: f.create_dataset(name, (2**40,), dtype="u1"))),
        ("rng as float", replace("rng/shuffle", lambda f, name: f.create_dataset(name, data=np.zeros(4)))),
        ("rng as external link", replace("rng/torch_cpu", lambda f, name: f.__setitem__(
            name, h5py.ExternalLink(other_file, "/rng/torch_cpu")))),
        ("rng external storage", replace("rng/torch_cpu", lambda f, name: f.create_dataset(
            name, (5056,), dtype="u1", external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)]))),
        ("soft link at the root", lambda f: f.__setitem__("extra", h5py.SoftLink("/rng"))),
        ("epoch attribute 2", lambda f: f.attrs.__setitem__("epoch", 2)),
        ("epoch attribute a string", lambda f: f.attrs.__setitem__("epoch", "one")),
        ("schema version 9.0", lambda f: f.attrs.__setitem__("schema_version", "9.0")),
        ("schema version deleted", lambda f: f.attrs.__delitem__("schema_version")),
        ("model of the wrong shape", lambda f: f.create_dataset("model/head.weight", data=np.zeros((7, 7)))),
        ("optimizer param_groups not JSON", lambda f: f["optimizer"].attrs.__setitem__("param_groups", "[{")),
        ("optimizer tensor_keys naming torch.load", lambda f: f["optimizer"].attrs.__setitem__(
            "tensor_keys", json.dumps({"0": {"momentum_buffer": "load"}}))),
        ("optimizer tensor_keys deleted", lambda f: f["optimizer"].attrs.__delitem__("tensor_keys")),
        ("harmless extra attribute", lambda f: f.attrs.__setitem__("note", "hello")),
    ]
    return edits


def _virtual_layout(source: str, name: str, shape):
    layout = h5py.VirtualLayout(shape=shape, dtype="f4")
    layout[...] = h5py.VirtualSource(source, name, shape=shape)
    return layout


def judge(run_dir: Path, expected, read) -> dict:
    from probe.errors import ProbeError

    try:
        got = read(run_dir)
    except ProbeError as err:
        return {"verdict": "typed error", "error": type(err).__name__, "message": str(err)[-200:]}
    except Exception as err:  # noqa: BLE001 - exactly what the fuzz test looks for
        return {"verdict": "untyped error", "error": type(err).__name__, "message": str(err)[-300:]}
    differ = [k for k, want in expected.items() if want is not None and (
              k not in got or got[k].shape != want.shape
              or not np.array_equal(got[k], want, equal_nan=got[k].dtype.kind == "f"))]
    differ += [k for k in got if k not in expected]
    if differ:
        return {"verdict": "wrong arrays", "error": None, "message": f"differ: {differ[:5]}"}
    return {"verdict": "right arrays", "error": None}


def _timeout(signum, frame):
    raise TimeoutError(f"a read took more than {SECONDS_PER_FILE} s")


def main(run_dir: Path, target: str) -> None:
    import faulthandler

    from tests.store.hostile import recommit, recommit_resume

    manifest = (run_dir / "manifest.json").read_bytes()
    if target == "epoch":
        path = run_dir / f"epoch_{EPOCH:05d}.h5"
        other = run_dir.parent / "other_epoch.h5"  # a valid file a hostile link or virtual dataset points into
        shutil.copy(run_dir / "epoch_00002.h5", other)
        read, edits, optimizer_json = read_everything, structure_mutations(str(other)), b""
        vouch = lambda: recommit(run_dir, EPOCH)  # noqa: E731
    else:
        path = run_dir / json.loads(manifest)["resume"]["file"]
        other = run_dir.parent / "other_resume.h5"
        shutil.copy(path, other)
        with h5py.File(path, "r") as f:
            optimizer_json = f["optimizer"].attrs["param_groups"].encode()
        read, edits = read_resume, resume_mutations(str(other))
        vouch = lambda: recommit_resume(run_dir)  # noqa: E731
    original = path.read_bytes()
    layout = raw_layout(path)
    original_arrays = read(run_dir)
    signal.signal(signal.SIGALRM, _timeout)
    rng = np.random.default_rng(0)

    mutations = list(byte_mutations(original, layout, rng))
    for label, edit in edits:
        path.write_bytes(original)
        with h5py.File(path, "r+") as f:
            edit(f)
        mutations.append((f"structure:{label}", path.read_bytes()))

    for i, (label, data) in enumerate(mutations):
        expected = expected_after(label, data, original, original_arrays, layout, optimizer_json)
        for manifest_updated in (True, False) if i % 5 == 0 else (True,):
            path.write_bytes(data)
            (run_dir / "manifest.json").write_bytes(manifest)
            if manifest_updated:
                vouch()
            signal.alarm(SECONDS_PER_FILE)
            faulthandler.dump_traceback_later(3 * SECONDS_PER_FILE, exit=True)  # stuck in C: die, loudly
            try:
                outcome = judge(run_dir, expected, read)
            except TimeoutError as err:
                outcome = {"verdict": "timeout", "error": "TimeoutError", "message": str(err)}
            finally:
                signal.alarm(0)
                faulthandler.cancel_dump_traceback_later()
            print(json.dumps({"file": label, "manifest_updated": manifest_updated, **outcome}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
