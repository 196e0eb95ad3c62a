"""A report on real pictures without training: sklearn digits as PNG files, clustered by
k-means on their pixels (confidence: softmax of negative distances). Used by the browser
test and to look at the page: ``python -m tests.report.demo DIR [N]``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.data.folder import FileImageDataset
from cluster_ssl.report.run_report import sample_names, write_report_dir


def digits_report(root: Path, count: int = 300, k: int = 10, k_scores=None) -> Path:
    """Write ``count`` digits to ``root/images`` and their report to ``root/run``."""
    digits = load_digits()
    folder = root / "images"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        name = folder / ("sub" if i % 7 == 0 else "") / f"{i:04d}.png"
        image = np.round(digits.images[i] * 255.0 / 16.0).astype(np.uint8)
        Image.fromarray(image, "L").save(name)
        paths.append(name)
    dataset = FileImageDataset(
        "folder", paths, 8, channels=1, labels=digits.target[:count], class_names=None
    )
    x = digits.data[:count] / 16.0
    model = KMeans(k, n_init=4, random_state=0).fit(x)
    distances = model.transform(x)
    logits = -(distances**2) / 2.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    prediction = Prediction(
        labels=model.labels_.astype(np.int64),
        num_clusters=k,
        confidence=probs.max(axis=1),
        embedding=x.astype(np.float32),
    )
    out = root / "run"
    write_report_dir(
        out,
        dataset,
        prediction,
        title=f"digits: {k} clusters",
        facts={"folder": str(folder), "images clustered": str(count)},
        names=sample_names(dataset, folder),
        k_scores=k_scores,
    )
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    scores = {8: 0.151, 9: 0.158, 10: 0.162, 11: 0.155, 12: 0.149}
    print(digits_report(target, n, k_scores=scores) / "report.html")
