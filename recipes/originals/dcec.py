"""DCEC (XifengGuo/DCEC ``DCEC.py``, ``datasets.py``): convolutional autoencoder pretraining
and clustering with the reconstruction kept. It runs MNIST and USPS; Fashion-MNIST takes
MNIST's values (unconfirmed)."""

from __future__ import annotations

from recipes.originals import Original, Protocol

DCEC_REPO = "XifengGuo/DCEC"
MAIN = f"{DCEC_REPO} DCEC.py"
FASHION = "unconfirmed: DCEC.py has no Fashion-MNIST; MNIST's value ({}) taken"
LOADER = {"mnist": "4-12", "fashion-mnist": "4-12", "usps": "17-43"}


def rows(dataset: str) -> tuple[Original, ...]:
    def source(where: str) -> str:
        return (
            FASHION.format(f"DCEC.py {where}") if dataset == "fashion-mnist" else f"{MAIN} {where}"
        )

    return (
        Original("channels", (32, 64, 128), source("line 253"), note="filters [32, 64, 128, 10]"),
        Original("embedding_dim", 10, source("line 253")),
        Original("epochs", 200, source("line 97"), note="pretrain(epochs=200)"),
        Original("pretrain.optimizer", "adam", source("line 97")),
        Original("pretrain.lr", 0.001, source("line 97"), note="'adam': Keras' default rate"),
        Original(
            "split",
            "train+test",
            f"{DCEC_REPO} datasets.py lines {LOADER[dataset]}",
            note="train and test concatenated",
        ),
        Original("eval_split", None, MAIN, note="the merged set is scored"),
        Original("gamma", 0.1, source("line 229")),
        Original("update_interval", 140, source("line 231"), note="on every dataset"),
        Original("optimizer", "adam", source("lines 258-259")),
        Original("lr", 0.001, source("lines 258-259"), note="'adam': Keras' default rate"),
        Original("batch_size", 256, source("--batch_size")),
        Original("maxiter", 20000, source("--maxiter"), note="2e4"),
        Original("tol", 0.001, source("--tol")),
        Original("kmeans_restarts", 20, f"{MAIN} line 150", note="KMeans(n_init=20)"),
        Original(
            "pixel_range",
            (-0.5, 0.5) if dataset == "usps" else (0.0, 1.0),
            f"{DCEC_REPO} datasets.py " + ("lines 40-41" if dataset == "usps" else "line 12"),
            note="the files' [-1, 1] values / 2" if dataset == "usps" else "pixels / 255",
        ),
    )


PROTOCOLS = {
    "mnist": Protocol(rows("mnist")),
    "fashion-mnist": Protocol(rows("fashion-mnist")),
    "usps": Protocol(rows("usps")),
}

WITHOUT_ORIGINAL = {"digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it"}
