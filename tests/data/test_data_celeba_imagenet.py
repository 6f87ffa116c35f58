"""CelebA (txt and csv forms, selectable columns) and ImageNet-style class folders."""

import pytest
import torch
from probe_data_fixtures import CELEBA_ATTRS, write_celeba, write_class_folders

from probe.data import build_dataset
from probe.errors import DataFormatError


@pytest.mark.parametrize("form", ["txt", "csv"])
def test_celeba_forms(tmp_path, form):
    rows = write_celeba(tmp_path, form)
    ds = build_dataset("celeba", data_root=str(tmp_path), image_size=12)
    assert ds.input_shape == (3, 12, 12) and ds.num_attrs == 2
    for code, name in ((0, "train"), (1, "val"), (2, "test")):
        s = ds.splits[name]
        mine = [r for r in rows if r[2] == code]
        assert s.y.tolist() == [int(v[2] == 1) for _, v, _ in mine]  # Blond_Hair
        assert s.a.tolist() == [int(v[3] == 1) for _, v, _ in mine]  # Male
        assert s.index.tolist() == [int(f[:6]) for f, _, _ in mine]
        assert s.inputs(torch.tensor([0])).shape == (1, 3, 12, 12)
    # training split is balanced here (ties go to attribute 0): BA iff a == 0
    assert torch.equal(ds.train.is_bc, ds.train.a != 0)


def test_celeba_txt_and_csv_agree_and_columns_are_selectable(tmp_path):
    write_celeba(tmp_path / "t", "txt")
    write_celeba(tmp_path / "c", "csv")
    a = build_dataset("celeba", data_root=str(tmp_path / "t"), image_size=8, target="Smiling", attribute="Bald")
    b = build_dataset("celeba", data_root=str(tmp_path / "c"), image_size=8, target="Smiling", attribute="Bald")
    for name in a.splits:
        assert torch.equal(a.splits[name].y, b.splits[name].y)
        assert torch.equal(a.splits[name].a, b.splits[name].a)
        assert torch.equal(a.splits[name].is_bc, b.splits[name].is_bc)
    k = CELEBA_ATTRS.index("Smiling")
    assert a.train.y.sum() > 0 and k == 4


@pytest.mark.parametrize("form", ["txt", "csv"])
def test_celeba_malformed(tmp_path, form):
    write_celeba(tmp_path, form)
    with pytest.raises(DataFormatError, match=rf"list_attr_celeba.{form}: missing column 'Wavy_Hair'"):
        build_dataset("celeba", data_root=str(tmp_path), target="Wavy_Hair", image_size=8)
    part = tmp_path / f"list_eval_partition.{form}"
    sep = " " if form == "txt" else ","
    part.write_text(part.read_text().replace(f"000003.jpg{sep}0", f"000003.jpg{sep}5"))
    line = 3 if form == "txt" else 4
    with pytest.raises(DataFormatError, match=rf"list_eval_partition.{form}, line {line}: .*unknown split code 5"):
        build_dataset("celeba", data_root=str(tmp_path), image_size=8)
    part.write_text(part.read_text().replace(f"000003.jpg{sep}5", f"000003.jpg{sep}0"))
    (tmp_path / "img_align_celeba" / "000010.jpg").unlink()
    with pytest.raises(DataFormatError, match=rf"list_attr_celeba.{form}, line \d+: image file .*000010.jpg"):
        build_dataset("celeba", data_root=str(tmp_path), image_size=8)


def test_imagenet_class_folders(tmp_path):
    write_class_folders(tmp_path / "imagenet")
    ds = build_dataset("imagenet", data_root=str(tmp_path), image_size=16, val_fraction=0.25)
    assert ds.num_classes == 3 and ds.num_attrs == 1 and ds.input_shape == (3, 16, 16)
    assert len(ds.train) + len(ds.splits["val"]) == 18 and len(ds.splits["test"]) == 6
    assert ds.splits["test"].y.tolist() == [0, 0, 1, 1, 2, 2]
    for s in ds.splits.values():
        assert not s.is_bc.any() and (s.a == 0).all()
    x = ds.splits["test"].inputs(torch.arange(6))
    assert x.shape == (6, 3, 16, 16)
    # classes are told apart by brightness in the fixture: the class order follows the sorted folder names
    means = x.mean(dim=(1, 2, 3))
    assert means[0] < means[2] < means[4]


def test_imagenet_flat_val_is_refused(tmp_path):
    write_class_folders(tmp_path)
    for f in (tmp_path / "val" / "n01").iterdir():
        f.rename(tmp_path / "val" / f.name)
    for d in (tmp_path / "val").iterdir():
        if d.is_dir():
            for f in d.iterdir():
                f.rename(tmp_path / "val" / f.name)
            d.rmdir()
    with pytest.raises(DataFormatError, match="val: no class folders but 6 loose images"):
        build_dataset("imagenet", data_root=str(tmp_path), image_size=8)
