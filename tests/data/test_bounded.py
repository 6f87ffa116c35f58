"""Data files are read within size limits fixed before allocating: real gzip bombs (4 MB of gzip, 4 GiB inflated)
are refused with little memory, headers declaring absurd or false sizes are one-line typed errors."""

import gzip
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from probe_data_fixtures import idx_bytes

from probe.cli import main
from probe.data.bounded import MAX_DATA_BYTES, read_bounded
from probe.data.cifar import read_binary_batch
from probe.data.images import MAX_IMAGE_PIXELS, load_image
from probe.data.mnist import IDX_IMAGES_MAGIC, read_idx
from probe.errors import DataFormatError, SizeLimitError
from tests.conftest import REPO

MEMORY_LIMIT_MB = 500


def idx_header(*shape: int) -> bytes:
    return (0x0800 | len(shape)).to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in shape)


def write_gzip_bomb(path, head: bytes = b"", gib: int = 4) -> None:
    """``head`` followed by ``gib`` GiB of zeros, as a valid multi-member gzip file of about ``gib`` MB."""
    block = bytes(64 * 2**20)
    rest = gzip.compress(block, compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head + block, compresslevel=9))
        for _ in range(16 * gib - 1):
            fh.write(rest)


#: Runs ``sys.argv[1:]`` and prints the child's peak resident memory (MB) as the last line of stderr. Launched from
#: this small process because Linux keeps a process's peak across exec: a child of the large pytest process would
#: report pytest's own size.
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_measured(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``args`` in a fresh process; returns the completed process (stderr without the figure) and its peak RSS
    in MB, measured with ``resource.getrusage``."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    *rest, peak = proc.stderr.splitlines()
    proc.stderr = "".join(line + "\n" for line in rest)
    return proc, int(peak)


def write_small_mnist(folder) -> None:
    """The four MNIST IDX files, tiny and plain (every label 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 20), ("t10k", 10)):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((n, 28, 28), np.uint8)))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(n, np.uint8)))


@pytest.mark.slow
def test_cli_refuses_a_gzip_bomb_with_little_memory(tmp_path):
    """``probe train`` on MNIST files whose training images are a 4 MB bomb declaring the largest IDX payload the
    limit admits (256 MiB) and inflating to 4 GiB: exit 2, one line, no run directory, and the peak memory of the
    whole CLI process under 500 MB (the stream is measured in chunks before anything is kept)."""
    write_small_mnist(tmp_path / "data")
    bomb = tmp_path / "data" / "train-images-idx3-ubyte.gz"
    (tmp_path / "data" / "train-images-idx3-ubyte").unlink()
    write_gzip_bomb(bomb, idx_header(256, 1024, 1024))
    assert bomb.stat().st_size < 5 * 2**20
    out = tmp_path / "run"
    proc, peak_mb = run_measured(sys.executable, "-m", "probe.cli", "train", "--dataset", "colored-mnist",
                                 "--data-root", str(tmp_path / "data"), "--lr", "0.1", "--epochs", "1", "--out",
                                 str(out))
    assert peak_mb < MEMORY_LIMIT_MB
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "train-images-idx3-ubyte.gz: IDX header shape (256, 1024, 1024) needs 268435456 data bytes, the file " \
           "has more" in proc.stderr
    assert not out.exists()


def test_whole_file_reads_measure_a_gzip_bomb_before_keeping_it(tmp_path):
    """CIFAR batches have no header: :func:`read_bounded` measures the stream, keeping nothing, up to the limit."""
    bomb = tmp_path / "data_batch_1.bin"
    write_gzip_bomb(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(SizeLimitError, match="data_batch_1.bin: decompresses to more than the limit of 64 MiB"):
            read_bounded(bomb, limit=64 * 2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20  # the limit is 64 MiB and the bomb inflates to 4 GiB: nothing of it was kept


def test_a_header_of_2_31_by_2_31_is_one_line(tmp_path, capsys):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header(2**31, 2**31) + bytes(100))
    with pytest.raises(SizeLimitError) as err:
        read_idx(path)
    assert "IDX header shape (2147483648, 2147483648)" in str(err.value) and "refused before reading" in str(err.value)
    assert "\n" not in str(err.value)
    # the same header in the four-file release, through the CLI: exit 2, one line, no run directory
    write_small_mnist(tmp_path / "data")
    (tmp_path / "data" / "t10k-images-idx3-ubyte").write_bytes(idx_header(2**31, 2**31, 1) + bytes(64))
    code = main(["train", "--dataset", "double-mnist", "--data-root", str(tmp_path / "data"), "--lr", "0.1",
                 "--epochs", "1", "--out", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1
    assert "t10k-images-idx3-ubyte: the data declared by its IDX header shape (2147483648, 2147483648, 1)" in stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("compressed", [False, True])
def test_headers_lying_about_the_size(tmp_path, compressed):
    real = idx_bytes(np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4))

    def write(data):
        path = tmp_path / ("lie.gz" if compressed else "lie")
        path.write_bytes(gzip.compress(data) if compressed else data)
        return path

    np.testing.assert_array_equal(read_idx(write(real), IDX_IMAGES_MAGIC).ravel(), np.arange(48))
    with pytest.raises(DataFormatError, match=r"IDX header shape \(3, 4, 4\) needs 48 data bytes, the file has 40"):
        read_idx(write(real[:-8]))  # declares more than the file holds
    with pytest.raises(DataFormatError, match=r"needs 48 data bytes, the file has more"):
        read_idx(write(real + bytes(5)))  # holds more than it declares
    with pytest.raises(DataFormatError, match=r"file ends inside the IDX header \(3 dimensions\)"):
        read_idx(write(real[:9]))


def test_a_small_gzip_cannot_declare_more_than_deflate_can_hold(tmp_path):
    path = tmp_path / "small.gz"
    path.write_bytes(gzip.compress(idx_header(1000, 1000, 100) + bytes(1000)))  # 100 MB declared in ~1 KB
    with pytest.raises(DataFormatError, match="more than a .*-byte gzip file can hold"):
        read_idx(path)


def test_damaged_gzip_is_a_typed_error(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((50, 8, 8), np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cut.gz"):
        read_idx(path)
    flipped = bytearray(data)
    flipped[-6] ^= 0xFF  # the CRC of the member
    path.write_bytes(bytes(flipped))
    with pytest.raises(DataFormatError, match="cut.gz: damaged or truncated"):
        read_idx(path)


def test_read_bounded_limits_plain_and_gzip_files(tmp_path):
    plain = tmp_path / "batch.bin"
    plain.write_bytes(bytes(3073 * 2))
    assert read_bounded(plain) == bytes(3073 * 2)
    with pytest.raises(SizeLimitError, match="batch.bin: the file is 6146 bytes"):
        read_bounded(plain, limit=6000)
    packed = tmp_path / "batch.bin.gz"
    packed.write_bytes(gzip.compress(bytes(3073 * 2)))
    assert read_binary_batch(packed, 10)[0].shape == (2, 3, 32, 32)
    with pytest.raises(SizeLimitError, match="decompresses to more than the limit"):
        read_bounded(packed, limit=6000)
    assert MAX_DATA_BYTES >= 160 * 10**6  # CIFAR-100's training batch (154 MB) fits


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path = tmp_path / "huge.png"  # a 40-byte header declaring 10000 x 8000 grey pixels, no pixel data
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10000, 8000, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    assert 10000 * 8000 > MAX_IMAGE_PIXELS
    with pytest.raises(SizeLimitError, match="huge.png: image header declares 10000x8000 pixels"):
        load_image(path)
