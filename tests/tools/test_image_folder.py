"""tools/image_folder.py: a labelled folder of PNGs (digits or a Fashion-MNIST subset) with
junk beside it, and the score of a clustering against its labels."""

import csv

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from cluster_ssl.data.folder import scan_images
from tests.data_formats import write_fashion_mnist
from tools.image_folder import JUNK_NAMES, main, score


def _labels(folder):
    return [line.split(",") for line in (folder / "labels.csv").read_text().splitlines()]


def test_digits_are_written_with_their_pixels_and_labels(tmp_path):
    main(["write", "digits", str(tmp_path), "--n", "12"])
    rows = _labels(tmp_path)
    digits = load_digits()
    assert [name for name, _ in rows] == [f"{i:04d}.png" for i in range(12)]
    assert [int(label) for _, label in rows] == digits.target[:12].tolist()
    pixels = np.asarray(Image.open(tmp_path / "images" / "0003.png"))
    assert np.array_equal(pixels, np.round(digits.images[3] * 255 / 16).astype(np.uint8))


def test_a_fashion_mnist_subset_is_the_first_n_test_images(tmp_path):
    written = write_fashion_mnist(tmp_path / "idx", n_test=10, folder=None)
    images, labels = written["test"]
    main(["write", "fashion-mnist", str(tmp_path / "out"), "--n", "6", "--root",
          str(tmp_path / "idx")])  # fmt: skip
    rows = _labels(tmp_path / "out")
    assert [int(label) for _, label in rows] == labels[:6].tolist()
    pixels = np.asarray(Image.open(tmp_path / "out" / "images" / rows[5][0]))
    assert np.array_equal(pixels, images[5, 0])


def test_junk_is_what_the_folder_scan_leaves_out(tmp_path):
    main(["write", "digits", str(tmp_path), "--n", "5", "--junk"])
    readable, skipped = scan_images(tmp_path / "images", decode=True)
    assert len(readable) == 5
    names = {path.name for path, _ in skipped}
    # the text file is not an image file at all, so it is passed over, not listed
    assert names == set(JUNK_NAMES) - {"notes.txt"}
    assert (tmp_path / "images" / "notes.txt").is_file()


@pytest.mark.parametrize("relabel", [lambda y: y, lambda y: (y + 3) % 10])
def test_score_matches_clusters_to_classes(tmp_path, relabel, capsys):
    main(["write", "digits", str(tmp_path), "--n", "40"])
    rows = _labels(tmp_path)
    with (tmp_path / "assignments.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "cluster", "confidence"])
        for name, label in rows:
            writer.writerow([f"images/{name}", relabel(int(label)), 0.9])
    metrics = score(tmp_path / "assignments.csv", tmp_path / "labels.csv")
    assert metrics["acc"] == pytest.approx(1.0) and metrics["nmi"] == pytest.approx(1.0)
    assert "40 images: ACC 1.0000" in capsys.readouterr().out
