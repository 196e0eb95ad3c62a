"""`tools/benchmark.py`: the pass-batch table, one row per network (timm models included)
and one column per batch size, and its one-line refusal of a bad `--pass-batch`."""

import pytest

from tools.benchmark import main


def test_pass_batch_times_every_network_at_every_batch(capsys):
    main(
        [
            "pass-batch",
            *("--widths", "0.25", "--side", "8", "--batches", "4,8"),
            *("--images", "16", "--repeats", "1", "--device", "cpu"),
            *("--timm", "test_vit", "--timm-images", "6"),
        ]
    )
    out = capsys.readouterr().out
    header = "| network | batch 4 | batch 8 |"
    assert header in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line != header]
    names = [row.split(" | ")[0][2:] for row in rows]
    assert names == [
        "ResNet-18, width 0.25",
        "DCEC encoder 32-64-128 convolutions",
        "DEC encoder d-500-500-2000-10",
        "timm test_vit, 160x160 px",
    ]
    cells = [row.strip("| ").split(" | ")[1:] for row in rows]
    for row in cells[:-1]:  # milliseconds per image, positive
        assert all(float(cell) > 0 for cell in row)
    assert float(cells[-1][0]) > 0  # 6 timm images: batch 4 timed, batch 8 larger than the pass
    assert cells[-1][1] == "-"


def test_a_pass_batch_below_one_is_refused_in_one_line():
    with pytest.raises(SystemExit, match="^--pass-batch must be at least 1, got 0$"):
        main(["dec", "--pass-batch", "0"])


def test_bank_loss_times_a_step_with_the_block_size_asked_for(capsys, monkeypatch):
    from cluster_ssl.losses import idfd

    blocks = []
    real = idfd._BankCrossEntropy.forward

    def counting(ctx, scaled, bank, target, bound, with_gradient):
        blocks.append(idfd.logits_per_block(scaled.device) // scaled.shape[0])
        return real(ctx, scaled, bank, target, bound, with_gradient)

    monkeypatch.setattr(idfd._BankCrossEntropy, "forward", staticmethod(counting))
    monkeypatch.setattr(idfd, "logits_per_block", idfd.logits_per_block)  # restored after
    main(["bank-loss", *("--batch", "8", "--n", "300", "--dim", "4", "--repeats", "2")])
    main(
        ["bank-loss", *("--batch", "8", "--n", "300", "--dim", "4", "--repeats", "2")]
        + ["--block", "80"]
    )
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("batch 8 against")]
    assert len(lines) == 2 and "blocks of 80 logits" in lines[1]
    assert all("ms (median of 2" in line for line in lines)
    assert blocks[:3] == [2**17 // 8] * 3 and blocks[3:] == [10] * 3  # warm-up + 2 steps each
