"""``lightmedseg profile``: the numbers it reports are consistent and the JSON is written."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lightmedseg.cli.main import main
from lightmedseg.model import LightMedSeg
from lightmedseg.tools.profiling import macs_flop_counter, parameter_table


def test_profile_cli_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "profile.json"
    rc = main(["profile", "--shape", "1", "4", "32", "32", "32", "--runs", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    model = LightMedSeg(4, 4)
    assert report["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert report["params"]["anchor_detector"] == sum(p.numel() for p in model.anchor_detector.parameters())
    macs = report["macs"]
    # fvcore adds group-norm arithmetic on top of the same convolutions, so it can only be larger
    assert macs["fvcore"]["total"] >= macs["flop_counter"]["total"] > 0
    assert report["memory"]["peak_mb"] > 0 and report["latency"]["median_ms"] > 0
    assert "paper" in capsys.readouterr().out


def test_per_module_macs_add_up_to_the_total() -> None:
    model = LightMedSeg(4, 4).eval()
    macs = macs_flop_counter(model, torch.randn(1, 4, 32, 32, 32))
    parts = sum(v for k, v in macs.items() if k != "total" and "." not in k)
    assert abs(parts - macs["total"]) / macs["total"] < 1e-6
    decoder_parts = sum(v for k, v in macs.items() if k.startswith("decoder."))
    assert abs(decoder_parts - macs["decoder"]) / macs["decoder"] < 1e-6


def test_flop_counter_matches_a_hand_count_for_the_head() -> None:
    model = LightMedSeg(4, 3).eval()
    macs = macs_flop_counter(model, torch.randn(1, 4, 16, 32, 16))
    assert macs["decoder.head"] == 16 * 32 * 16 * 8 * 3  # one 1x1x1 conv, 8 -> 3 channels per voxel


def test_parameter_table_covers_the_whole_model() -> None:
    table = parameter_table(LightMedSeg(1, 4, use_skip_router=False))
    top = [k for k in table if k != "total" and "." not in k]
    assert sum(table[k] for k in top) == table["total"]
    assert "skip_router" not in table


def test_bad_preset_is_a_clear_error(capsys) -> None:
    rc = main(["profile", "--preset", "nope", "--only", "params"])
    assert rc == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
