"""The scikit-learn estimators: every method fits, predicts and transforms arrays through its
recipe; DEC and IDEC pass scikit-learn's own estimator checks; they work in a Pipeline and in
GridSearchCV with an NMI scorer; bad input gets scikit-learn-style errors."""

import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import cluster_ssl
from cluster_ssl.cli import main
from cluster_ssl.data.digits import load_digits_arrays
from cluster_ssl.estimators import CC, DCEC, DEC, IDEC, IDFD, PCL, SCAN, DeepCluster, SimCLRKMeans
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.methods.base import StageContext

FAST_MLP = {"hidden_dims": "16,16,32", "maxiter": 10, "kmeans_restarts": 1, "batch_size": 32}
IMAGES = {"image_size": 8, "kmeans_restarts": 1}
#: every estimator, shrunk to seconds: (estimator, whether it has centres)
SMALL = [
    (DEC(4, epochs=2, random_state=0, options=FAST_MLP), True),
    (IDEC(4, epochs=2, random_state=0, options=FAST_MLP), True),
    (DCEC(4, epochs=1, random_state=0, options={"maxiter": 10, "kmeans_restarts": 1}), True),
    (SimCLRKMeans(4, epochs=1, batch_size=32, random_state=0, options=IMAGES), True),
    (CC(4, epochs=1, batch_size=32, random_state=0, options=IMAGES), False),
    (IDFD(4, epochs=1, batch_size=32, random_state=0, options=IMAGES), True),
    (
        PCL(
            4,
            epochs=1,
            batch_size=32,
            random_state=0,
            options={**IMAGES, "num_prototypes": "4,6", "warmup_epochs": 0, "queue_size": 64},
        ),
        True,
    ),
    (
        SCAN(
            4,
            epochs=1,
            batch_size=32,
            random_state=0,
            options={
                **IMAGES,
                "scan.epochs": 1,
                "selflabel.epochs": 1,
                "scan.batch_size": 32,
                "selflabel.batch_size": 32,
                "scan.num_neighbours": 3,
                "selflabel.confidence_threshold": 0.0,
            },
        ),
        False,
    ),
    (
        DeepCluster(
            4,
            epochs=1,
            batch_size=32,
            random_state=0,
            options={**IMAGES, "num_pseudo_classes": 8, "pca_dim": 16},
        ),
        True,
    ),
]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:160] / 16, y[:160]


def inputs(estimator, x):
    return x if estimator.input_kind == "vectors" else x.reshape(-1, 8, 8)


@pytest.mark.parametrize(("estimator", "has_centres"), SMALL, ids=lambda e: type(e).__name__)
def test_every_estimator_fits_predicts_and_transforms(estimator, has_centres, digits):
    x = inputs(estimator, digits[0])
    fitted = clone(estimator).fit(x)
    assert fitted.labels_.shape == (len(x),)
    assert set(fitted.labels_) <= set(range(4))
    assert fitted.n_features_in_ == x.shape[1]
    if not isinstance(fitted, IDFD):  # IDFD's training labels come from its memory bank
        np.testing.assert_array_equal(fitted.predict(x), fitted.labels_)
    embedding = fitted.transform(x[:7])
    assert embedding.shape[0] == 7 and embedding.dtype == np.float32
    assert hasattr(fitted, "cluster_centers_") == has_centres
    if has_centres:
        assert fitted.cluster_centers_.shape == (4, embedding.shape[1])
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(x[:9]), fitted.predict(x[:9]))


def test_predict_reuses_the_fitted_centres_instead_of_re_embedding_the_training_data(
    digits, monkeypatch, pass_batches
):
    estimator = SimCLRKMeans(4, epochs=1, batch_size=32, random_state=0, options=IMAGES)
    x = inputs(estimator, digits[0])
    fitted = estimator.fit(x)
    cpu = torch.device("cpu")
    training = StageContext(fitted.train_dataset_, cpu, fitted.seed_, num_workers=0)
    new = StageContext(
        fitted._dataset(fitted._validated(x[:20], reset=False)),
        cpu,
        fitted.seed_,
        num_workers=0,
        training_data=False,
    )
    with torch.no_grad():  # the CLI's path: k-means on the training embedding again
        fresh = fitted.method_.predict_new(training, new).labels

    def refuse(ctx):
        raise AssertionError("predict re-ran k-means on the training data")

    monkeypatch.setattr(fitted.method_, "training_centres", refuse)
    pass_batches.clear()  # the contexts above, built by hand without a network, used 512
    np.testing.assert_array_equal(fitted.predict(x[:20]), fresh)
    assert fitted.transform(x[:20]).shape[0] == 20
    assert pass_batches and set(pass_batches) == {64}  # every pass through the ResNet on a CPU


def test_a_seeded_fit_is_repeatable_and_parameters_round_trip(digits):
    estimator = IDEC(4, epochs=2, random_state=3, options=FAST_MLP)
    first = clone(estimator).fit_predict(digits[0])
    np.testing.assert_array_equal(clone(estimator).fit_predict(digits[0]), first)
    params = estimator.get_params()
    assert params["n_clusters"] == 4 and params["options"] == FAST_MLP
    assert clone(estimator).set_params(n_clusters=6).n_clusters == 6


def test_an_int_random_state_trains_the_cli_run_of_that_seed(tmp_path):
    """IDEC(random_state=S) on the digits the CLI reads is `cluster-ssl train idec --seed S`."""
    settings = {**FAST_MLP, "maxiter": 20}
    argv = ["train", "idec", "--dataset", "digits", "--epochs", "1", "--seed", "5"]
    argv += ["--out", str(tmp_path / "run"), "--no-progress", "--wandb", "disabled"]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())

    images, labels = load_digits_arrays()
    x = images.reshape(len(images), -1).astype(np.float32) / 255
    fitted = IDEC(10, epochs=1, random_state=5, options=settings).fit(x)
    assert fitted.seed_ == 5
    scores = evaluate_clustering(labels, fitted.labels_, 10)
    assert scores["nmi"] == pytest.approx(summary["nmi"], abs=1e-12)
    assert scores["acc"] == pytest.approx(summary["acc"], abs=1e-12)


def test_random_state_outside_numpy_seeds_is_refused():
    with pytest.raises(ValueError, match=r"random_state must be in \[0, 2\*\*32\)"):
        IDEC(2, random_state=-1).fit(np.zeros((4, 3)))


def test_the_top_level_names_are_the_estimators():
    assert cluster_ssl.IDEC is IDEC and cluster_ssl.SimCLRKMeans is SimCLRKMeans
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        cluster_ssl.Nope  # noqa: B018


def test_pipeline_and_grid_search_with_an_nmi_scorer(digits):
    x, y = digits
    pipeline = make_pipeline(MinMaxScaler(), IDEC(4, epochs=2, random_state=0, options=FAST_MLP))
    assert pipeline.fit_predict(x * 16).shape == (len(x),)
    search = GridSearchCV(
        IDEC(epochs=2, random_state=0, options=FAST_MLP),
        {"n_clusters": [3, 6]},
        scoring="normalized_mutual_info_score",
        cv=2,
    ).fit(x, y)
    assert search.best_params_["n_clusters"] in (3, 6)
    assert 0.0 <= search.best_score_ <= 1.0


def test_bad_input_gets_scikit_learn_style_errors(digits):
    x = digits[0]
    with pytest.raises(ValueError, match=r"CC expects images .* got an array of shape \(160, 64\)"):
        CC(4).fit(x)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        IDEC(4).fit(np.where(x > 0.5, np.nan, x))
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=8"):
        IDEC(8).fit(x[:5])
    with pytest.raises(NotFittedError):
        IDEC(4).predict(x)
    fitted = IDEC(4, epochs=1, random_state=0, options=FAST_MLP).fit(x)
    with pytest.raises(ValueError, match="X has 63 features, but IDEC is expecting 64"):
        fitted.predict(x[:, :63])
    with pytest.raises(ValueError, match="unknown setting 'nope'"):
        IDEC(4, options={"nope": 1}).fit(x)
    diverging = IDEC(4, epochs=1, random_state=0, options={**FAST_MLP, "lr": 1e4})
    with pytest.raises(ValueError, match=r"NaN or infinite .* \(options=\{'lr'"):
        diverging.fit(x * 100)


@parametrize_with_checks(
    [
        DEC(3, epochs=2, random_state=0, options={**FAST_MLP, "batch_size": 16}),
        # some checks' data are unscaled (values near 100): IDEC's SGD at the paper's
        # momentum 0.99 diverges on them (and says so), Adam does not
        IDEC(3, epochs=2, random_state=0, options={**FAST_MLP, "optimizer": "adam", "lr": 1e-3}),
    ]
)
def test_scikit_learn_estimator_checks(estimator, check):
    """scikit-learn's own checks, for the estimators that take (n_samples, n_features)
    arrays; the image estimators take (n_samples, H, W[, C]) arrays, which those checks do
    not generate (their equivalents are in the tests above)."""
    check(estimator)
