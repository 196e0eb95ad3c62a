"""IDEC (XifengGuo/IDEC ``IDEC.py``): clustering from an autoencoder pretrained elsewhere
(``--ae_weights``, "must be given"; its README points to the DEC paper's Caffe code,
piiswrong/dec). It runs MNIST and USPS; Fashion-MNIST takes MNIST's values (unconfirmed)."""

from __future__ import annotations

from recipes.originals import Original, Protocol, Unmatched

IDEC_REPO = "XifengGuo/IDEC"
MAIN = f"{IDEC_REPO} IDEC.py"
FASHION = "unconfirmed: IDEC.py has no Fashion-MNIST; MNIST's value ({}) taken"


def rows(dataset: str) -> tuple[Original, ...]:
    def source(where: str) -> str:
        return (
            FASHION.format(f"IDEC.py {where}") if dataset == "fashion-mnist" else f"{MAIN} {where}"
        )

    usps = dataset == "usps"
    return (
        Original("hidden_dims", (500, 500, 2000), source("line 195"), note="d-500-500-2000-10"),
        Original("embedding_dim", 10, source("line 195")),
        Original(
            "pretrain.dropout",
            0.2,
            f"{IDEC_REPO} README.md step 4 (piiswrong/dec; the DEC paper's denoising dropout)",
            reason=(
                "pretrained end to end as the Keras DEC's presets (recipes/dec.py, "
                "recipes/idec.py): no Caffe, and it scores higher than the layer-wise "
                "denoising pretraining"
            ),
        ),
        Original(
            "split",
            "train+test",
            f"{IDEC_REPO} datasets.py lines 72-73, 103-104",
            note="train and test concatenated",
        ),
        Original("eval_split", None, MAIN, note="the merged set is scored"),
        Original("batch_size", 256, source("--batch_size")),
        Original("maxiter", 20000, source("--maxiter"), note="2e4"),
        Original("tol", 0.001, source("--tol")),
        Original("kmeans_restarts", 20, source("line 96"), note="KMeans(n_init=20)"),
        Original("gamma", 0.1, source("line 173")),
        Original(
            "update_interval",
            30 if usps else 140,
            source("line 189" if usps else "lines 175, 186"),
            note="the recommended value in its comment" if usps else "",
        ),
        Original(
            "optimizer", "sgd" if usps else "adam", source("line 183" if usps else "line 188")
        ),
        Original(
            "lr",
            0.1 if usps else 0.001,
            source("line 183" if usps else "line 188"),
            note="SGD(lr=0.1, momentum=0.99)" if usps else "'adam': Keras' default rate",
        ),
        *((Original("momentum", 0.99, source("line 183")),) if usps else ()),
        Original(
            "pixel_range",
            (-1.0, 1.0) if usps else (0.0, 5.1),
            f"{IDEC_REPO} datasets.py " + ("lines 80-104" if usps else "line 75")
            if dataset != "fashion-mnist"
            else FASHION.format("datasets.py line 75, MNIST's pixels / 50"),
            reason=(
                "the autoencoder is pretrained here as the Keras DEC's (the "
                "pretrain.dropout row), on "
                f"{'[-0.5, 0.5]' if usps else '[0, 1]'}, and both stages see the scale it "
                "was pretrained on; IDEC's own scale is that of the Caffe DEC pretraining "
                "it loads (piiswrong/dec's MNIST x 0.02): --set pixel_range="
                + ("-1,1" if usps else "0,5.1")
                + " with a pretraining tuned for it"
            ),
            note="the files' values as read" if usps else "pixels / 50, 'as it does in DEC paper'",
        ),
    )


LAYERWISE = Unmatched(
    "autoencoder pretraining",
    "greedy layer-wise denoising pretraining, then end-to-end fine-tuning (the DEC paper's "
    "Caffe code)",
    f"{IDEC_REPO} README.md step 4",
    "the Keras DEC's end-to-end pretraining (recipes/dec.py), which scores higher",
)
PROTOCOLS = {
    dataset: Protocol(rows(dataset), (LAYERWISE,)) for dataset in ("mnist", "fashion-mnist", "usps")
}

WITHOUT_ORIGINAL = {"digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it"}
