"""Dataset readers: good IDX/CSV/NPZ files load identically; bad ones fail naming file and place."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from core.datasets import (
    PIXEL_COLUMNS,
    Dataset,
    DatasetError,
    iter_kaggle_csv,
    load_dataset,
    load_idx_images,
    load_idx_labels,
)

LABEL_HEADER = "label," + ",".join(PIXEL_COLUMNS)
TEST_HEADER = ",".join(PIXEL_COLUMNS)


@pytest.fixture(scope="module")
def sample(mnist: Dataset) -> Dataset:
    """The first 50 real digits."""
    return Dataset(mnist.X[:50], mnist.y[:50], mnist.source, mnist.digest)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_pair(directory: Path, X: np.ndarray, y: np.ndarray, gz: bool, prefix: str = "train") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    opener = gzip.compress if gz else bytes
    images = directory / f"{prefix}-images-idx3-ubyte{suffix}"
    images.write_bytes(opener(idx_bytes(X.reshape(-1, 28, 28), 0x803)))
    (directory / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(opener(idx_bytes(y, 0x801)))
    return images


def csv_lines(X: np.ndarray, y: np.ndarray | None) -> list[str]:
    rows = [",".join(map(str, row)) for row in X.astype(int)]
    if y is None:
        return [TEST_HEADER, *rows]
    return [LABEL_HEADER, *(f"{label},{row}" for label, row in zip(y, rows, strict=True))]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_same(dataset: Dataset, sample: Dataset, labels: bool = True) -> None:
    np.testing.assert_array_equal(np.asarray(dataset.X, dtype=np.float32), sample.X.astype(np.float32))
    assert dataset.X.shape == (len(sample), 784)
    if labels:
        np.testing.assert_array_equal(dataset.y, sample.y)
        assert dataset.y.dtype == np.int64
    assert len(dataset.digest) == 64


# ---------------------------------------------------------------- good files


def test_real_mnist_directory(mnist: Dataset, mnist_dir: Path) -> None:
    assert mnist.X.shape == (10_000, 784) and mnist.X.dtype == np.uint8
    assert mnist.y.shape == (10_000,) and set(np.unique(mnist.y)) == set(range(10))
    assert mnist.X.min() == 0 and mnist.X.max() == 255
    assert mnist.source.endswith("t10k-images-idx3-ubyte.gz")
    train, dev = mnist.split_last(0.2)
    assert len(train) == 8000 and len(dev) == 2000
    np.testing.assert_array_equal(dev.X, mnist.X[8000:])  # the dev split is the file's tail


@pytest.mark.parametrize(("rows", "fraction", "dev_rows"), [(1, 0.2, 1), (2, 0.8, 2), (5, 0.95, 5)])
def test_split_last_refuses_an_empty_training_side(sample: Dataset, rows: int, fraction: float,
                                                   dev_rows: int) -> None:
    small = Dataset(sample.X[:rows], sample.y[:rows], "small.csv", sample.digest)
    with pytest.raises(DatasetError, match=rf"small.csv: {rows} row\(s\) cannot be split .* dev fraction "
                                           rf"{fraction:g} \(the dev split would take {dev_rows}\)"):
        small.split_last(fraction)


def test_split_last_smallest_valid_split_has_one_row_each_side(sample: Dataset) -> None:
    train, dev = Dataset(sample.X[:2], sample.y[:2], "two.csv", sample.digest).split_last(0.2)
    assert (len(train), len(dev)) == (1, 1)
    np.testing.assert_array_equal(dev.X, sample.X[1:2])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_and_images_file_with_labels_beside_it(tmp_path: Path, sample: Dataset, gz: bool) -> None:
    images = write_idx_pair(tmp_path / "data", sample.X, sample.y, gz)
    assert_same(load_dataset(tmp_path / "data"), sample)
    assert_same(load_dataset(images), sample)


def test_directory_with_both_splits_prefers_training(tmp_path: Path, sample: Dataset) -> None:
    write_idx_pair(tmp_path, sample.X[:10], sample.y[:10], gz=True, prefix="t10k")
    write_idx_pair(tmp_path, sample.X[10:], sample.y[10:], gz=False, prefix="train")
    assert len(load_dataset(tmp_path)) == 40


def test_kaggle_train_and_test_csv(tmp_path: Path, sample: Dataset) -> None:
    loaded = load_dataset(write(tmp_path / "train.csv", csv_lines(sample.X, sample.y)))
    assert_same(loaded, sample)
    assert loaded.X.flags.c_contiguous  # training gathers rows of it, batch after batch
    test_csv = write(tmp_path / "test.csv", csv_lines(sample.X, None))
    unlabelled = load_dataset(test_csv, require_labels=False)
    assert_same(unlabelled, sample, labels=False)
    assert unlabelled.y is None
    with pytest.raises(DatasetError, match=r"test.csv: line 1: first column must be 'label' for training data, "
                                           r"found 'pixel0'"):
        load_dataset(test_csv)
    np.savez(tmp_path / "unlabelled.npz", X=sample.X)
    with pytest.raises(DatasetError, match=r"unlabelled.npz: has no labels, which training and evaluation need"):
        load_dataset(tmp_path / "unlabelled.npz")


def test_csv_streams_in_chunks(tmp_path: Path, sample: Dataset) -> None:
    path = write(tmp_path / "train.csv", csv_lines(sample.X, sample.y))
    chunks = list(iter_kaggle_csv(path, chunk_rows=16))
    assert [first for first, _, _ in chunks] == [0, 16, 32, 48]
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), sample.X.astype(np.float32))


@pytest.mark.parametrize("shape", [(50, 784), (50, 28, 28)])
def test_npz_flat_and_square(tmp_path: Path, sample: Dataset, shape: tuple[int, ...]) -> None:
    np.savez(tmp_path / "d.npz", X=sample.X.reshape(shape), y=sample.y)
    assert_same(load_dataset(tmp_path / "d.npz"), sample)
    np.savez(tmp_path / "f.npz", X=sample.X.reshape(shape).astype(np.float64), y=sample.y.astype(np.float32))
    assert_same(load_dataset(tmp_path / "f.npz"), sample)


# ---------------------------------------------------------------- malformed IDX


def test_idx_wrong_magic_number(tmp_path: Path, sample: Dataset) -> None:
    images = write_idx_pair(tmp_path, sample.X, sample.y, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    # Swap the files' roles: an images reader sees the labels' magic number.
    shutil.copy(labels, tmp_path / "swapped-images-idx3-ubyte")
    with pytest.raises(DatasetError, match=r"swapped-images-idx3-ubyte: wrong magic number 0x00000801 at byte 0, "
                                           r"expected 0x00000803"):
        load_idx_images(tmp_path / "swapped-images-idx3-ubyte")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: wrong magic number 0x00000803"):
        load_idx_labels(images)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated(tmp_path: Path, sample: Dataset, gz: bool) -> None:
    images = write_idx_pair(tmp_path, sample.X, sample.y, gz=False)
    cut = images.read_bytes()[:-100]
    target = images.with_name(images.name + ".gz") if gz else images
    images.unlink()
    target.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    assert target.name in message and "truncated" in message
    assert "50x28x28 = 39200 bytes" in message and "39100" in message


def test_idx_truncated_header_and_corrupt_gzip(tmp_path: Path) -> None:
    (tmp_path / "a-images-idx3-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match=r"a-images-idx3-ubyte: file is 2 bytes, too short"):
        load_idx_images(tmp_path / "a-images-idx3-ubyte")
    (tmp_path / "b-images-idx3-ubyte").write_bytes(struct.pack(">II", 0x803, 5))
    with pytest.raises(DatasetError, match=r"b-images-idx3-ubyte: truncated header \(8 bytes, need 16\)"):
        load_idx_images(tmp_path / "b-images-idx3-ubyte")
    (tmp_path / "c-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(DatasetError, match=r"c-images-idx3-ubyte.gz: corrupt gzip stream"):
        load_idx_images(tmp_path / "c-images-idx3-ubyte.gz")


def test_idx_label_outside_range_and_count_mismatch(tmp_path: Path, sample: Dataset) -> None:
    labels = sample.y.copy()
    labels[7] = 11
    write_idx_pair(tmp_path / "bad", sample.X, labels, gz=True)
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: label 11 at index 7 is outside 0\.\.9"):
        load_dataset(tmp_path / "bad")
    write_idx_pair(tmp_path / "short", sample.X, sample.y[:49], gz=True)
    with pytest.raises(DatasetError, match=r"50 images but train-labels-idx1-ubyte.gz has 49 labels"):
        load_dataset(tmp_path / "short")


def test_idx_missing_labels_and_empty_files(tmp_path: Path, sample: Dataset) -> None:
    images = write_idx_pair(tmp_path, sample.X, sample.y, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError,
                       match=r"train-images-idx3-ubyte.gz: no labels file train-labels-idx1-ubyte\[.gz\] beside it"):
        load_dataset(images)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DatasetError, match=r"empty: no \*-images-idx3-ubyte"):
        load_dataset(empty_dir)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: file is 0 bytes"):
        load_dataset(images)


def test_missing_path_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere.csv: no such file or directory"):
        load_dataset(tmp_path / "nowhere.csv")
    (tmp_path / "data.txt").write_text("1,2,3\n")
    with pytest.raises(DatasetError, match=r"data.txt: unknown dataset format"):
        load_dataset(tmp_path / "data.txt")


# ---------------------------------------------------------------- malformed CSV


def broken_csv(tmp_path: Path, sample: Dataset, row: int, change: str) -> Path:
    """train.csv of 10 digits with data row ``row`` (0-based, so file line row + 2) altered."""
    lines = csv_lines(sample.X[:10], sample.y[:10])
    cells = lines[row + 1].split(",")
    if change == "drop-cell":
        cells.pop()
    elif change == "extra-cell":
        cells.append("0")
    elif change == "word":
        cells[301] = "abc"
    elif change == "empty-cell":
        cells[301] = ""
    elif change == "pixel-300":
        cells[301] = "300"
    elif change == "pixel-negative":
        cells[1] = "-1"
    elif change == "label-10":
        cells[0] = "10"
    elif change == "label-fraction":
        cells[0] = "2.5"
    elif change == "label-empty":
        cells[0] = ""
    elif change == "pixel-inf":
        cells[301] = "inf"
    lines[row + 1] = ",".join(cells)
    return write(tmp_path / "train.csv", lines)


@pytest.mark.parametrize(("change", "expected"), [
    ("drop-cell", "train.csv: line 6: expected 785 columns, found 784"),
    ("extra-cell", "train.csv: line 6: expected 785 columns, found 786"),
    ("word", "train.csv: line 6, column 302 (pixel300): 'abc' is not a number"),
    ("empty-cell", "train.csv: line 6, column 302 (pixel300): an empty cell"),
    ("pixel-300", "train.csv: line 6, column 302 (pixel300): value 300 is outside 0..255"),
    ("pixel-negative", "train.csv: line 6, column 2 (pixel0): value -1 is outside 0..255"),
    ("label-10", "train.csv: line 6, column 1 (label): value 10 is not a digit label 0..9"),
    ("label-fraction", "train.csv: line 6, column 1 (label): value 2.5 is not a digit label 0..9"),
    ("label-empty", "train.csv: line 6, column 1 (label): an empty cell"),
    ("pixel-inf", "train.csv: line 6, column 302 (pixel300): value inf is outside 0..255"),
])
def test_csv_errors_name_line_and_column(tmp_path: Path, sample: Dataset, change: str, expected: str) -> None:
    path = broken_csv(tmp_path, sample, 4, change)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == f"{path.parent}/{expected}"


def test_csv_error_line_numbers_are_absolute_across_chunks(tmp_path: Path, sample: Dataset) -> None:
    path = broken_csv(tmp_path, sample, 8, "word")
    with pytest.raises(DatasetError, match=r"line 10, column 302 \(pixel300\)"):
        list(iter_kaggle_csv(path, chunk_rows=3))
    path = broken_csv(tmp_path, sample, 8, "extra-cell")
    with pytest.raises(DatasetError, match=r"line 10: expected 785 columns, found 786"):
        list(iter_kaggle_csv(path, chunk_rows=3))


def test_csv_header_problems(tmp_path: Path, sample: Dataset) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match=r"empty.csv: not a CSV file with a header line"):
        load_dataset(tmp_path / "empty.csv")
    write(tmp_path / "header.csv", [LABEL_HEADER])
    with pytest.raises(DatasetError, match=r"header.csv: the file has a header but no rows"):
        load_dataset(tmp_path / "header.csv")
    write(tmp_path / "narrow.csv", ["label,pixel0,pixel1", "1,0,0"])
    with pytest.raises(DatasetError, match=r"narrow.csv: line 1: expected 784 pixel columns pixel0..pixel783 after "
                                           "label, found 2"):
        load_dataset(tmp_path / "narrow.csv")
    renamed = csv_lines(sample.X[:2], sample.y[:2])
    renamed[0] = renamed[0].replace("pixel5,", "px5,")
    write(tmp_path / "renamed.csv", renamed)
    with pytest.raises(DatasetError, match=r"renamed.csv: line 1: column 7 is named 'px5', expected 'pixel5'"):
        load_dataset(tmp_path / "renamed.csv")
    # A test.csv layout is fine for scoring but not for training.
    write(tmp_path / "test.csv", csv_lines(sample.X[:2], None))
    with pytest.raises(DatasetError, match=r"test.csv: line 1: first column must be 'label'"):
        list(iter_kaggle_csv(tmp_path / "test.csv", require_label=True))



@pytest.mark.parametrize("tail", ["\n", "\n\n\n", "\r\n\r\n", "\n  \n\t\n"])
def test_csv_blank_lines_at_end_of_file_are_not_rows(tmp_path: Path, sample: Dataset, tail: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text("\n".join(csv_lines(sample.X[:10], sample.y[:10])) + tail, newline="")
    for chunk_rows in (3, 10, 1000):  # the blank tail in its own chunk, or sharing one with rows
        chunks = list(iter_kaggle_csv(path, chunk_rows=chunk_rows, require_label=True))
        np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), sample.X[:10].astype(np.float32))
        np.testing.assert_array_equal(np.concatenate([c[2] for c in chunks]), sample.y[:10])


def test_csv_blank_line_between_rows_is_an_error_naming_it(tmp_path: Path, sample: Dataset) -> None:
    lines = csv_lines(sample.X[:10], sample.y[:10])
    lines.insert(4, "")  # file line 5
    path = write(tmp_path / "train.csv", [*lines, ""])  # and a blank tail, which alone would be fine
    for chunk_rows in (3, 1000):
        with pytest.raises(DatasetError, match=r"train.csv: line 5: expected 785 columns, found 0"):
            list(iter_kaggle_csv(path, chunk_rows=chunk_rows))


def test_csv_label_column_is_skipped_unchecked_when_not_read(tmp_path: Path, sample: Dataset) -> None:
    lines = csv_lines(sample.X[:6], sample.y[:6])
    lines[2] = "12" + lines[2][lines[2].index(","):]  # out of range
    lines[3] = "x" + lines[3][lines[3].index(","):]  # not a number
    lines[4] = lines[4][lines[4].index(","):]  # empty
    path = write(tmp_path / "train.csv", lines)
    with pytest.raises(DatasetError, match=r"line 4, column 1 \(label\): 'x' is not a number"):
        list(iter_kaggle_csv(path))  # labels read (training, evaluation): validated
    chunks = list(iter_kaggle_csv(path, chunk_rows=4, read_label=False))
    assert [labels for _, _, labels in chunks] == [None, None]
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), sample.X[:6].astype(np.float32))
    # The pixels are still checked, and named by their place in the whole row.
    lines[5] = _with_cell(lines[5], 301, "abc")
    lines[6] = _with_cell(lines[6], 1, "300")
    write(path, lines)
    with pytest.raises(DatasetError, match=r"line 6, column 302 \(pixel300\): 'abc' is not a number"):
        list(iter_kaggle_csv(path, read_label=False))
    lines[5] = _with_cell(lines[5], 301, "0")
    write(path, lines)
    with pytest.raises(DatasetError, match=r"line 7, column 2 \(pixel0\): value 300 is outside 0..255"):
        list(iter_kaggle_csv(path, read_label=False))
    write(path, [*lines[:6], lines[6].rsplit(",", 1)[0]])
    with pytest.raises(DatasetError, match=r"line 7: expected 785 columns, found 784"):
        list(iter_kaggle_csv(path, read_label=False))


def _with_cell(line: str, index: int, value: str) -> str:
    cells = line.split(",")
    cells[index] = value
    return ",".join(cells)


# ---------------------------------------------------------------- malformed NPZ


def test_npz_errors(tmp_path: Path, sample: Dataset) -> None:
    cases = {
        "no_x.npz": ({"images": sample.X}, r"no_x.npz: no array 'X' \(found images\)"),
        "shape.npz": ({"X": sample.X.reshape(50, 49, 16), "y": sample.y}, r"X has shape \(50, 49, 16\)"),
        "pixel.npz": ({"X": np.full((2, 784), 256.0), "y": [1, 2]}, r"X\[0, 0\] = 256.0 is outside 0..255"),
        "nan.npz": ({"X": np.full((2, 784), np.nan), "y": [1, 2]}, r"X\[0, 0\] = nan is outside 0..255"),
        "label.npz": ({"X": sample.X[:3], "y": [1, -1, 2]}, r"label.npz: y\[1\] = -1 is not a digit label 0..9"),
        "y_shape.npz": ({"X": sample.X[:3], "y": [1, 2]}, r"y has shape \(2,\), expected \(3,\)"),
        "y_text.npz": ({"X": sample.X[:1], "y": ["1"]}, r"y has dtype <U1, expected integer labels"),
        "x_text.npz": ({"X": np.array([["a"] * 784])}, r"X has dtype <U1, expected numbers"),
    }
    for name, (arrays, pattern) in cases.items():
        np.savez(tmp_path / name, **{k: np.asarray(v) for k, v in arrays.items()})
        with pytest.raises(DatasetError, match=pattern):
            load_dataset(tmp_path / name)


def test_npz_not_an_archive_and_pickled_objects_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"empty.npz: not an .npz archive"):
        load_dataset(tmp_path / "empty.npz")
    (tmp_path / "text.npz").write_text("X,y\n")
    with pytest.raises(DatasetError, match=r"text.npz: not an .npz archive"):
        load_dataset(tmp_path / "text.npz")
    np.savez(tmp_path / "objects.npz", X=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DatasetError, match=r"objects.npz: not a readable .npz archive.*allow_pickle=False"):
        load_dataset(tmp_path / "objects.npz")
    np.savez(tmp_path / "none.npz", X=np.zeros((0, 784)), y=np.zeros(0, dtype=np.int64))
    with pytest.raises(DatasetError, match=r"none.npz: contains no images"):
        load_dataset(tmp_path / "none.npz")
