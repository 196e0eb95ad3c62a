"""PCL: the paper's code (salesforce/PCL ``main_pcl.py``) runs ImageNet only. The CIFAR
presets follow a public clustering reproduction, ProPos's (Hzzone/ProPos), whose PCL run
configuration is published for CIFAR-20 (``config/pcl_cifar20_r18_config.json``); they are
compared with that run (which run produced the CIFAR numbers quoted in docs/RESULTS.md's
sources is not recorded here)."""

from __future__ import annotations

from recipes.originals import Original, Protocol

PCL_REPO = "salesforce/PCL"
PROPOS = "Hzzone/ProPos"
RUN = f"{PROPOS} config/pcl_cifar20_r18_config.json"


def rows(dataset: str) -> tuple[Original, ...]:
    """ProPos's PCL run on CIFAR-20 (taken for CIFAR-10 too, unconfirmed)."""
    run = RUN if dataset == "cifar100-20" else f"unconfirmed: {RUN} (CIFAR-20's run) assumed"
    return (
        Original("backbone", "resnet18", run, note="encoder_name: bigresnet18"),
        Original(
            "stem",
            "cifar",
            f"{PROPOS} network/__init__.py",
            note="bigresnet18 = ResNet('resnet18', cifar=True)",
        ),
        Original("image_size", None, run, note="img_size 32: the dataset's own side"),
        Original("split", "train+test", run, note="whole_dataset: true"),
        Original("eval_split", None, run, note="the merged set is clustered and scored"),
        Original("epochs", 1000, run),
        Original(
            "batch_size",
            128,
            run,
            reason=(
                "128 per GPU and the GPU count is not in the run's record; the preset takes "
                "256 at lr 0.1, ProPos's linear rule (lr x total batch / 256, "
                "models/basic_template.py lines 30-33)"
            ),
            note="per GPU",
        ),
        Original("optimizer", "sgd", f"{PROPOS} models/pcl/pcl.py set_model"),
        Original("lr", 0.1, run, note="learning_rate 0.1 per 256 images"),
        Original("momentum", 0.9, run),
        Original("weight_decay", 1e-4, run),
        Original("feature_dim", 128, run, note="feat_dim"),
        Original("mlp_head", True, run, note="mlp: true"),
        Original("blur", False, run, note="use_gaussian_blur: false"),
        Original("queue_size", 4096, run),
        Original("encoder_momentum", 0.99, run, note="moco_momentum"),
        Original("num_prototypes", (250, 500, 1000), run, note="num_clusters '250,500,1000'"),
        Original("warmup_epochs", 50, run, note="ProtoNCE from epoch 50 (models/pcl/pcl.py)"),
        Original(
            "temperature",
            1.0,
            run,
            note="moco_temp: 1 (InfoNCE temperature and mean concentration)",
        ),
        Original("prototype_weight", 0.01, run, note="cls_loss_weight: 0.01"),
        Original(
            "symmetric",
            True,
            f"{run}; {PROPOS} models/pcl/pcl_wrapper.py lines 105-131",
            note="InfoNCE and ProtoNCE with each view as the query, summed",
        ),
        Original(
            "warmup",
            0.05,
            f"{run}; {PROPOS} models/basic_template.py lines 449-461",
            note="warmup_epochs 50 of 1000: cosine_annealing_LR's linear ramp",
        ),
        Original(
            "final_lr_fraction",
            0.01,
            f"{PROPOS} models/basic_template.py line 79",
            note="learning_eta_min's default 0.01 (not in the run's record)",
        ),
        Original(
            "score_embedding",
            "key_projection",
            f"{PROPOS} models/pcl/pcl.py set_model and psedo_labeling",
            note="k-means on feature_extractor = encoder_k (backbone + head), L2-normalised",
        ),
        Original(
            "estep_kmeans",
            "propos",
            f"{PROPOS} models/basic_template.py lines 486-500; Hzzone/torch_clustering "
            "torch_clustering/kmeans/kmeans.py",
            note=(
                "PyTorchKMeans(metric='cosine', init='k-means++', n_init=10, max_iter=300, "
                "tol=1e-4): cosine assignment, the prototypes the plain means; of the "
                "L2-normalised keys here, as the base template's psedo_labeling clusters "
                "(PCL's own psedo_labeling calls a self.extract_features the published "
                "TrainTask does not define, so its normalisation is unconfirmed)"
            ),
        ),
        Original(
            "crop_scale",
            0.08,
            f"{PROPOS} models/basic_template.py lines 99 and 251",
            note="resized_crop_scale's default (not in the run's record)",
        ),
        Original(
            "negative_prototypes",
            4096,
            f"{PROPOS} models/pcl/pcl_wrapper.py line 66",
            note="random.choices(..., k=self.K): as many as the queue",
        ),
        Original(
            "negative_sampling",
            "batch",
            f"{PROPOS} models/pcl/pcl_wrapper.py lines 60-66",
            reason=(
                "the paper's rule by default (each sample's negatives from every prototype "
                "but its positive, recipes/pcl.py); --set negative_sampling=batch is the code's"
            ),
            note="once per batch, from the prototypes that are no sample's positive",
        ),
        Original(
            "schedule",
            "cosine",
            f"unconfirmed: the run's record has no step_lr; without it {PROPOS} "
            "models/basic_template.py adjust_learning_rate (lines 476-480) runs "
            "cosine_annealing_LR",
        ),
    )


PROTOCOLS = {dataset: Protocol(rows(dataset)) for dataset in ("cifar10", "cifar100-20")}

_NO_RUN = "no published PCL run on it; the preset extends the CIFAR settings"
WITHOUT_ORIGINAL = {
    "stl10": f"{_NO_RUN} at 96 px with the ImageNet stem",
    "imagenet10": (
        f"{_NO_RUN} at 224 px with MoCo v2's blur (PCL's ImageNet settings, {PCL_REPO} "
        "main_pcl.py, are sized for 1.28M images: k up to 100,000)"
    ),
    "imagenet-dogs": "as imagenet10",
    "tiny-imagenet": f"{_NO_RUN} at 64 px",
    "digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
    "fashion-mnist": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
}
