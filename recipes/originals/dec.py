"""DEC: the presets follow the popular Keras reimplementation (XifengGuo/DEC-keras ``DEC.py``
and ``datasets.py``), which pretrains end to end and scores higher than the paper's greedy
layer-wise pretraining (recipes/dec.py); Fashion-MNIST is its ``fmnist``."""

from __future__ import annotations

from recipes.originals import Original, Protocol

KERAS_DEC = "XifengGuo/DEC-keras"
MAIN = f"{KERAS_DEC} DEC.py"
#: where ``DEC.py`` sets each dataset's update interval, pretraining epochs, init, optimiser
PER_DATASET = {"mnist": "296-301", "fashion-mnist": "296-301", "usps": "308-310"}
#: where ``datasets.py`` merges each dataset's train and test images
LOADER = {"mnist": "94-101", "fashion-mnist": "106-112", "usps": "147-171"}


def pretraining_rows(dataset: str, source: str = MAIN) -> tuple[Original, ...]:
    """The autoencoder and its end-to-end pretraining in ``DEC.py`` (IDEC's code loads it)."""
    lines = f"{source} lines {PER_DATASET[dataset]}"
    sgd = dataset != "usps"
    rows = (
        Original("hidden_dims", (500, 500, 2000), f"{source} line 321", note="d-500-500-2000-10"),
        Original("embedding_dim", 10, f"{source} line 321"),
        Original(
            "weight_init",
            "fan_in_uniform" if sgd else "glorot_uniform",
            lines if sgd else f"{source} line 293",
            note="VarianceScaling(1/3, fan_in, uniform)" if sgd else "Keras' glorot_uniform",
        ),
        Original("epochs", 300 if sgd else 50, lines, note="pretrain_epochs"),
        Original(
            "pretrain.optimizer", "sgd" if sgd else "adam", lines if sgd else f"{source} line 294"
        ),
        Original(
            "pretrain.lr",
            1.0 if sgd else 0.001,
            lines if sgd else f"{source} line 294",
            note="SGD(lr=1, momentum=0.9)" if sgd else "'adam': Keras' default rate",
        ),
        Original(
            "pretrain.dropout",
            0.0,
            f"{source} DEC.autoencoder",
            note="no dropout; the paper's layer-wise pretraining used 0.2",
        ),
    )
    if sgd:
        rows += (Original("pretrain.momentum", 0.9, lines),)
    return rows + (
        Original(
            "pixel_range",
            (0.0, 1.0) if sgd else (-0.5, 0.5),
            f"{KERAS_DEC} datasets.py line {101 if dataset == 'mnist' else 112 if sgd else 170}",
            note="pixels / 255" if sgd else "the files' [-1, 1] values / 2",
        ),
    )


def clustering_rows(dataset: str, source: str = MAIN) -> tuple[Original, ...]:
    """KL(P || Q) fine-tuning: what the DEC family shares (batch, stopping rule, centres)."""
    return (
        Original(
            "split",
            "train+test",
            f"{KERAS_DEC} datasets.py lines {LOADER[dataset]}",
            note="train and test concatenated",
        ),
        Original("eval_split", None, MAIN, note="the merged set is scored"),
        Original("batch_size", 256, f"{source} --batch_size"),
        Original("maxiter", 20000, f"{source} --maxiter", note="2e4"),
        Original("tol", 0.001, f"{source} --tol"),
        Original("kmeans_restarts", 20, f"{MAIN} line 205", note="KMeans(n_init=20)"),
        Original("alpha", 1.0, f"{MAIN} ClusteringLayer"),
    )


def rows(dataset: str) -> tuple[Original, ...]:
    lines = f"{MAIN} lines {PER_DATASET[dataset]}"
    return (
        *pretraining_rows(dataset),
        *clustering_rows(dataset),
        Original("update_interval", 140 if dataset != "usps" else 30, lines),
        Original("optimizer", "sgd", f"{MAIN} line 332", note="SGD(0.01, 0.9)"),
        Original("lr", 0.01, f"{MAIN} line 332"),
        Original("momentum", 0.9, f"{MAIN} line 332"),
    )


PROTOCOLS = {
    "mnist": Protocol(rows("mnist")),
    "fashion-mnist": Protocol(rows("fashion-mnist")),
    "usps": Protocol(rows("usps")),
}

WITHOUT_ORIGINAL = {"digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it"}
