"""``probe data check|show|list`` and exit code 2 with a one-line message on malformed input."""

import numpy as np
import pytest
from PIL import Image
from probe_data_fixtures import idx_bytes, write_celeba, write_mnist, write_waterbirds

from probe.cli import main


def test_check_reports_what_was_found(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    write_waterbirds(tmp_path)
    # a small release: every count differs from the official one, so the check exits 1 with the table
    assert main(["data", "check", "waterbirds", "--data-root", str(tmp_path), "--image-size", "16",
                 "--data-option", f"segmentation_root={tmp_path}"]) == 1
    out = capsys.readouterr().out
    assert "Waterbirds metadata.csv release" in out and "train: n=14" in out and "group counts [6, 2, 1, 5]" in out
    assert "core mask covers" in out
    assert "train landbird-land        6   3498  MISMATCH" in out
    assert "test  total                8   5794  MISMATCH" in out
    assert "15 count(s) differ from the official release" in out
    assert main(["data", "check", "colored-mnist"]) == 0
    assert "embedded default" in capsys.readouterr().out


def test_show_writes_one_row_per_group(tmp_path, capsys):
    write_waterbirds(tmp_path)
    out = tmp_path / "grid.png"
    assert main(["data", "show", "waterbirds", "--data-root", str(tmp_path), "--image-size", "16",
                 "--out", str(out), "--per-group", "4"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100
    out2 = tmp_path / "parity.png"
    assert main(["data", "show", "parity", "--rho", "0.9", "--out", str(out2)]) == 0
    assert out2.stat().st_size > 1000


def test_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("waterbirds", "celeba", "moon-star", "mnist-cifar", "imagenet"):
        assert f"{name}:" in out


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("probe: error: ")
    return err


def test_malformed_input_exits_2_with_one_line(tmp_path, capsys):
    # wrong IDX magic number
    write_mnist(tmp_path / "m", "plain")
    (tmp_path / "m" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((60, 2), np.uint8)))
    assert main(["data", "check", "colored-mnist", "--data-root", str(tmp_path / "m")]) == 2
    assert "train-labels-idx1-ubyte: IDX magic number 0x00000802" in _one_error_line(capsys)
    # missing column
    write_celeba(tmp_path / "c", "csv")
    assert main(["data", "check", "celeba", "--data-root", str(tmp_path / "c"),
                 "--data-option", "attribute=Eyeglasses"]) == 2
    assert "list_attr_celeba.csv: missing column 'Eyeglasses'" in _one_error_line(capsys)
    # unknown split code and missing image file
    wb = write_waterbirds(tmp_path / "w", segmentations=False)
    meta = wb["folder"] / "metadata.csv"
    original = meta.read_text()
    meta.write_text(original.replace(",0,0,0,place", ",0,9,0,place", 1))
    assert main(["data", "check", "waterbirds", "--data-root", str(tmp_path / "w")]) == 2
    assert "metadata.csv, line 2: column 'split': unknown split code 9" in _one_error_line(capsys)
    meta.write_text(original)
    (wb["folder"] / wb["rows"][0][1]).unlink()
    assert main(["data", "check", "waterbirds", "--data-root", str(tmp_path / "w")]) == 2
    assert "metadata.csv, line 2, column 'img_filename': image file" in _one_error_line(capsys)
    # unknown dataset, bad option
    assert main(["data", "check", "mnist-svhn"]) == 2
    assert "unknown dataset" in _one_error_line(capsys)
    assert main(["data", "show", "parity", "--out", str(tmp_path / "x.png"), "--data-option", "rho"]) == 2
    assert "key=value" in _one_error_line(capsys)


@pytest.mark.parametrize("name", ["cifar10", "celeba", "waterbirds", "imagenet"])
def test_no_data_root_explains(name, capsys, monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    assert main(["data", "check", name]) == 2
    err = _one_error_line(capsys)
    assert "--data-root" in err and "PROBE_DATA" in err and "never downloads" in err


def test_check_waterbirds_exits_0_when_the_counts_are_official(tmp_path, capsys, monkeypatch):
    import importlib

    wb = importlib.import_module("probe.data.waterbirds")  # the module (the package exports a function of that name)
    write_waterbirds(tmp_path)
    monkeypatch.setattr(wb, "OFFICIAL_GROUP_COUNTS", {"train": (6, 2, 1, 5), "val": (2, 2, 2, 2),
                                                      "test": (2, 2, 2, 2)})
    assert main(["data", "check", "waterbirds", "--data-root", str(tmp_path), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "matches the official release" in out
    # one image moved from val to test: both splits and two groups differ
    meta = tmp_path / "waterbird_complete95_forest2water2" / "metadata.csv"
    lines = meta.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.split(",")[3] == "1")
    cells = lines[k].split(",")
    cells[3] = "2"
    lines[k] = ",".join(cells)
    meta.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", "waterbirds", "--data-root", str(tmp_path), "--image-size", "16"]) == 1
    out = capsys.readouterr().out
    assert out.count("MISMATCH") == 4 and "4 count(s) differ" in out
