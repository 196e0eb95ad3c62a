"""Each paper preset's resolved settings are what the original code ran (issue "paper
fidelity"), and the code added to match it behaves as the original."""

import math

import pytest
import torch

from cluster_ssl.augment.stats import CIFAR10_PIXEL_STD, unnormalised_stats
from cluster_ssl.commands.config_card import resolved_settings
from cluster_ssl.config import build_config, overrides_in_current_names
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.runtime.errors import UserError
from recipes import RECIPES, cc, idfd, simclr
from recipes.contrastive_common import embedding_method_args
from recipes.originals import originals_of, resolved_value, same


def matched_originals(
    recipe: str, dataset: str, prefix: str = "", names: tuple[str, ...] = ()
) -> dict[str, object]:
    """The original's values (recipes/originals) of ``recipe``'s settings on ``dataset``
    named in ``names`` or else starting with ``prefix``, each asserted to carry no reason:
    these are matched, not explained away."""
    rows = originals_of(recipe).PROTOCOLS[dataset].rows
    chosen = [
        row for row in rows if (row.setting in names if names else row.setting.startswith(prefix))
    ]
    assert chosen and all(not row.reason for row in chosen)
    assert not names or len(chosen) == len(names)
    return {row.setting: row.value for row in chosen}


def assert_matched(recipe: str, dataset: str, originals: dict[str, object]) -> None:
    settings = resolved_settings(recipe, dataset)
    for name, value in originals.items():
        assert same(resolved_value(settings, name), value), name


# 1. STL-10: SCAN's models/resnet_stl.py stem for SimCLR and SCAN's pretext
@pytest.mark.parametrize("recipe", ["simclr", "scan"])
def test_stl10_uses_scans_stl_stem(recipe):
    settings = resolved_settings(recipe, "stl10")
    assert settings["stem"] == "stl"
    assert settings["split"] == "train+unlabeled"


@pytest.mark.parametrize("recipe", ["simclr", "scan"])
def test_other_datasets_keep_their_stems(recipe):
    assert resolved_settings(recipe, "cifar10")["stem"] == "cifar"
    assert resolved_settings(recipe, "imagenet10")["stem"] == "imagenet"


@pytest.mark.parametrize("recipe", ["simclr", "scan", "cc", "idfd", "pcl", "deepcluster"])
def test_stem_setting_is_checked_and_names_the_choices(recipe):
    assert resolved_settings(recipe, "cifar10", {"stem": "stl"})["stem"] == "stl"
    with pytest.raises(UserError, match=r"stem=vgg: unknown stem; use one of imagenet, cifar, stl"):
        resolved_settings(recipe, "stl10", {"stem": "vgg"})


@pytest.mark.parametrize(("old", "stem"), [(True, "cifar"), ("false", "imagenet"), ("1", "cifar")])
def test_runs_recorded_with_cifar_stem_resume_with_its_stem(old, stem):
    """Runs written before the switch became ``stem`` keep their network."""
    recipe = RECIPES.get("simclr")
    overrides = overrides_in_current_names(recipe.config, {"cifar_stem": old, "lr": 0.1})
    assert overrides == {"stem": stem, "lr": 0.1}
    assert build_config(recipe.config, recipe.preset("cifar10"), overrides).stem == stem


def test_setting_cifar_stem_now_names_stem():
    with pytest.raises(UserError, match=r"--set cifar_stem: this setting is now stem; write"):
        resolved_settings("simclr", "cifar10", {"cifar_stem": "false"})


class _Images(ImageDataset):
    def __init__(self, name: str, n: int, side: int) -> None:
        self.name, self.n, self.side = name, n, side

    def __len__(self) -> int:
        return self.n

    @property
    def image_shape(self):
        return (3, self.side, self.side)


def test_simclr_builds_the_stl_stem():
    cfg = simclr.SimCLRConfig(stem="stl", width=0.25)
    args = embedding_method_args(cfg, _Images("stl10", 8, 96), 10)
    net = args["backbone"].net
    assert isinstance(net.maxpool, torch.nn.MaxPool2d)
    assert (net.maxpool.kernel_size, net.maxpool.stride, net.maxpool.padding) == (2, 2, 1)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)


# 2. SCAN on the ImageNet subsets: scan_imagenet_50.yml / selflabel_imagenet_50.yml, every
# setting of both steps as recorded in recipes/originals/scan.py
@pytest.mark.parametrize("dataset", ["imagenet10", "imagenet-dogs"])
def test_scan_imagenet_steps_are_scans_configs(dataset):
    settings = resolved_settings("scan", dataset)
    for step in ("scan", "selflabel"):
        originals = matched_originals("scan", dataset, f"{step}.")
        assert {f"{step}.{key}" for key in settings[step]} == set(originals)  # every setting
        assert_matched("scan", dataset, originals)
    assert settings["scan"]["optimizer"] == "sgd" and settings["scan"]["lr"] == 5.0
    assert settings["selflabel"]["class_balancing"] is False


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100-20", "stl10"])
def test_scan_cifar_and_stl_steps_keep_adam(dataset):
    settings = resolved_settings("scan", dataset)
    for step in ("scan", "selflabel"):
        assert_matched("scan", dataset, matched_originals("scan", dataset, f"{step}."))
        assert settings[step]["optimizer"] == "adam"
        assert settings[step]["lr"] == 1e-4 and settings[step]["weight_decay"] == 1e-4


def test_scan_step_optimiser_is_built_from_its_settings():
    from recipes.scan import SCANStepSettings, _optimizer

    spec = _optimizer(SCANStepSettings(optimizer="sgd", lr=5.0, weight_decay=0.0))
    optimiser = spec.build([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimiser, torch.optim.SGD)
    group = optimiser.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (5.0, 0.9, 0.0)
    assert group["nesterov"] is False


# 3. CC on STL-10: train_STL10.py's two passes (the unlabelled images with the instance
# loss, train+test with both), its loader, optimiser and augmentation strength
def test_cc_stl10_trains_as_train_stl10():
    names = ("split", "eval_split", "unlabelled_instance_only", "strength", "optimizer", "lr")
    originals = matched_originals("cc", "stl10", names=(*names, "weight_decay"))
    assert originals["split"] == "train+test+unlabeled"
    assert_matched("cc", "stl10", originals)
    settings = resolved_settings("cc", "stl10")
    assert settings["unlabelled_instance_only"] is True and settings["strength"] == 1.0


# 5. CC's inputs are not normalised in its code
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100-20", "stl10", "imagenet10"])
def test_cc_paper_presets_do_not_normalise(dataset):
    assert resolved_settings("cc", dataset)["normalize"] is False


def test_cc_cpu_presets_keep_normalising():
    assert resolved_settings("cc", "digits")["normalize"] is True


def test_cc_unnormalised_pipeline_keeps_the_0_1_scale():
    cfg = cc.CCConfig(image_size=8)
    images = torch.rand(2, 3, 8, 8)
    dataset = _Images("cifar10", 2, 8)
    plain = cc.pipeline_of("eval", cfg, dataset, normalize=False)
    assert torch.allclose(plain(images), images, atol=1e-6)
    normalised = cc.pipeline_of("eval", cfg, dataset, normalize=True)
    assert not torch.allclose(normalised(images), images, atol=1e-3)
    assert unnormalised_stats(3) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


# 4. IDFD: CIFAR's training images alone, as its code; 5. its bank initialisation and std
@pytest.mark.parametrize(
    ("dataset", "split"), [("cifar10", "train"), ("cifar100-20", "train"), ("stl10", "train+test")]
)
def test_idfd_trains_and_scores_the_codes_split(dataset, split):
    settings = resolved_settings("idfd", dataset)
    assert (settings["split"], settings["eval_split"]) == (split, None)


def test_idfd_cifar10_uses_the_codes_std():
    settings = resolved_settings("idfd", "cifar10")
    assert settings["std"] == CIFAR10_PIXEL_STD == (0.2470, 0.2435, 0.2616)
    assert resolved_settings("idfd", "cifar100-20")["std"] == ()


def test_idfd_cifar10_pipeline_normalises_with_that_std():
    cfg = idfd.IDFDConfig(std=CIFAR10_PIXEL_STD)
    images = torch.full((1, 3, 32, 32), 0.5)
    out = idfd.pipeline_of("eval", cfg, _Images("cifar10", 1, 32))(images)
    mean = (0.4914, 0.4822, 0.4465)
    expected = [(0.5 - m) / s for m, s in zip(mean, CIFAR10_PIXEL_STD, strict=True)]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected), atol=1e-5)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100-20", "stl10", "imagenet10"])
def test_idfd_paper_presets_start_the_bank_as_the_code(dataset):
    assert resolved_settings("idfd", dataset)["bank_init"] == "uniform"
    assert resolved_settings("idfd", "digits")["bank_init"] == "normal"


def test_idfd_uniform_bank_is_the_codes_draw():
    bank = idfd.memory_bank(5000, 128, "uniform")
    bound = 1.0 / math.sqrt(128 / 3.0)
    memory = bank.memory
    assert memory.abs().max() <= bound and memory.min() < -0.9 * bound
    assert abs(float(memory.norm(dim=1).mean()) - 1.0) < 0.05  # about unit rows, not exactly
    assert not torch.allclose(memory.norm(dim=1), torch.ones(5000))
    assert torch.equal(memory, idfd.memory_bank(5000, 128, "uniform").memory)  # seeded
    normal = idfd.memory_bank(10, 128, "normal").memory
    assert torch.allclose(normal.norm(dim=1), torch.ones(10))
    with pytest.raises(UserError, match="bank_init"):
        resolved_settings("idfd", "cifar10", {"bank_init": "zeros"})


# 5. PCL on the paper datasets runs as ProPos's published PCL run (its CIFAR reproduction,
# Hzzone/ProPos config/pcl_cifar20_r18_config.json and models/basic_template.py)
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100-20", "stl10", "imagenet10"])
def test_pcl_paper_presets_are_propos_run(dataset):
    settings = resolved_settings("pcl", dataset)
    propos = {
        "temperature": 1.0,
        "prototype_weight": 0.01,
        "symmetric": True,
        "schedule": "cosine",
        "warmup": 0.05,
        "final_lr_fraction": 0.01,
        "crop_scale": 0.08,
        "score_embedding": "key_projection",
    }
    assert {name: settings[name] for name in propos} == propos
    cpu = resolved_settings("pcl", "digits")
    assert (cpu["symmetric"], cpu["warmup"], cpu["final_lr_fraction"]) == (False, 0.0, 1e-3)
    assert cpu["score_embedding"] == "backbone"


def test_simclr_cosine_ends_at_scans_floor():
    """SCAN's cosine: eta_min = lr * lr_decay_rate ** 3 = lr * 1e-3."""
    settings = resolved_settings("simclr", "cifar10")
    assert (settings["schedule"], settings["final_lr_fraction"]) == ("cosine", 1e-3)


# 10. USPS enters the DEC family in [-0.5, 0.5]: the Keras DEC's and DCEC's loaders halve the
# files' [-1, 1] values (DEC-keras datasets.py line 170, DCEC datasets.py lines 40-41); IDEC
# pretrains as the Keras DEC here, so it takes that scale too
@pytest.mark.parametrize("recipe", ["dec", "idec", "dcec"])
def test_usps_pixels_enter_as_the_keras_loaders_give_them(recipe):
    assert resolved_settings(recipe, "usps")["pixel_range"] == (-0.5, 0.5)
    for dataset in ("mnist", "fashion-mnist", "digits"):
        assert resolved_settings(recipe, dataset)["pixel_range"] == (0.0, 1.0)
    assert resolved_settings(recipe, "mnist", {"pixel_range": "0,5.1"})["pixel_range"] == (0, 5.1)


@pytest.mark.parametrize("bad", ["1,0", "0.5,0.5", "0,1,2", "0"])
def test_a_pixel_range_that_is_no_range_is_a_clear_error(bad):
    with pytest.raises(UserError, match=r"pixel_range=.*low below high"):
        resolved_settings("dec", "mnist", {"pixel_range": bad})


# Schedules stepped once an epoch where the original does: SCAN's adjust_learning_rate
# (SimCLR pretext) and IDFD's MultiStepLR; ProPos's PCL sets its rate every iteration
@pytest.mark.parametrize(
    ("recipe", "dataset", "per_epoch"),
    [
        ("simclr", "cifar10", True),
        ("scan", "stl10", True),
        ("idfd", "cifar10", True),
        ("idfd", "imagenet10", True),
        ("pcl", "cifar10", False),
        ("simclr", "digits", False),
        ("idfd", "fashion-mnist", False),
    ],
)
def test_schedules_step_once_an_epoch_where_the_original_does(recipe, dataset, per_epoch):
    assert resolved_settings(recipe, dataset)["schedule_per_epoch"] is per_epoch
