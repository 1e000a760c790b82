"""The model-making commands end to end on a tiny synthetic run: ``train --finalize`` (score the run's model
files, average best and last, choose TTA and post-processing, write the card), then ``predict -m RUN`` from
the card scores what the card says; ``score-checkpoints``, ``average`` and ``make-card`` on their own."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from lightmedseg.checkpoint import read_checkpoint, resolve_model_path
from lightmedseg.cli.main import main as cli
from lightmedseg.data.synth import make_synthetic_dataset

torch.set_num_threads(1)

# 2 epochs x 3 steps of one 32^3 patch, validated (and snapshotted) after each epoch: seconds on one core.
TINY = ["data.patch_size=[32,32,32]", "train.epochs=2", "train.iterations_per_epoch=3", "train.batch_size=1",
        "train.val_every=1", "train.amp=none", "train.num_workers=0", "train.tensorboard=false", "train.seed=5",
        "train.snapshots=true", "data.augment={flip: true, rotate: false, noise: false}"]
FAST = ["--device", "cpu", "--backend", "torch", "-q"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synth", num_cases=5, seed=1, shape=(32, 32, 32))


@pytest.fixture(scope="module")
def finalized(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    argv = ["train", "--preset", "demo", "--data", str(dataset), "-o", str(run), "--device", "cpu", "-q", "--finalize"]
    assert cli(argv + [a for o in TINY for a in ("--set", o)]) == 0
    return run


def test_train_finalize_writes_the_table_the_model_and_the_card(finalized, dataset) -> None:
    run = finalized
    rows = _rows(run / "finalize" / "checkpoints.csv")
    names = [Path(r["model"]).name for r in rows]
    assert names[:2] == ["model_best.safetensors", "model_last.safetensors"]
    assert [n for n in names if n.startswith("model_step")] == ["model_step0000003.safetensors", "model_step0000006.safetensors"]
    assert all(0 <= float(r["mean_dice"]) <= 100 for r in rows) and {"dice_WT", "dice_TC", "dice_ET", "hd95_mm"} <= set(rows[0])
    card = json.loads((run / "card.json").read_text())
    chosen = Path(card["training"]["selection"].split(":")[0])
    by_name = {Path(r["model"]).name: float(r["mean_dice"]) for r in rows}
    assert by_name[chosen.name] == max(by_name.values())  # the best-scoring file (ties: the first)
    # the chosen weights became the file -m RUN loads
    assert resolve_model_path(run).name == "model.safetensors"
    final, picked = read_checkpoint(run / "model.safetensors")[0], read_checkpoint(run / chosen)[0]
    assert all(torch.equal(final[k], picked[k]) for k in final)
    # the card: every TTA mode tried, the chosen one the best, the labels and channels of the run
    assert set(card["predict"]["measured"]) == {"none", "mirror", "rot90"}
    mode = card["predict"]["tta"] or "none"
    assert card["predict"]["measured"][mode] == max(card["predict"]["measured"].values())
    assert card["labels"] == json.loads((dataset / "dataset.json").read_text())["labels"]
    assert set(card["postprocess"]) >= {"keep_largest", "require_contact"}
    defaults = _rows(run / "finalize" / "defaults.csv")
    chosen_row = next(r for r in defaults if r["tta"] == mode and r["postprocess"] == "chosen")
    assert float(chosen_row["mean_dice"]) == card["validation"]["mean_dice"]
    assert len([r for r in defaults if r["postprocess"] == "none"]) == 3


def test_predict_from_the_card_scores_what_the_card_says(finalized, dataset, tmp_path) -> None:
    """``predict -m RUN`` (no options) uses the card's TTA and post-processing: evaluating its output on the
    validation cases gives the card's validation score."""
    from lightmedseg.data.layout import case_files
    from lightmedseg.evaluation.evaluate import evaluate_folders

    run = finalized
    cases = json.loads((run / "split.json").read_text())["validation"]
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for case in cases:
        files, label = case_files(dataset, case)
        for f in files:
            shutil.copy(f, images / f.name)
        shutil.copy(label, labels / label.name)
    # predict's own defaults, as `train --finalize` scored with them (an explicit --backend would differ from the
    # card on a CPU whose auto precision is bf16: OpenVINO and torch round differently)
    assert cli(["predict", "-i", str(images), "-o", str(tmp_path / "pred"), "-m", str(run), "--device", "cpu", "-q"]) == 0
    _, summary = evaluate_folders(tmp_path / "pred", labels, dataset / "dataset.json", progress=False)
    card = json.loads((run / "card.json").read_text())
    assert round(100 * summary["metrics"]["average_dice"], 2) == pytest.approx(card["validation"]["mean_dice"], abs=0.011)


def test_average_and_score_commands(finalized, dataset, tmp_path) -> None:
    run = finalized
    snaps = sorted((run / "snapshots").glob("*.safetensors"))
    out = tmp_path / "avg.safetensors"
    assert cli(["average", "-o", str(out), *map(str, snaps)]) == 0
    a, b, avg = (read_checkpoint(p)[0] for p in (*snaps, out))
    for key in avg:
        if avg[key].is_floating_point():
            torch.testing.assert_close(avg[key], (a[key].double() + b[key].double()).div(2).float())
    table = tmp_path / "scores.csv"
    assert cli(["score-checkpoints", str(run), "--data", str(dataset), "--models", str(out), str(snaps[0]),
                "-o", str(table), *FAST]) == 0
    rows = _rows(table)
    assert [Path(r["model"]).name for r in rows] == ["avg.safetensors", snaps[0].name]
    assert all(0 <= float(r["mean_dice"]) <= 100 for r in rows)


def test_make_card_keeps_hand_written_fields_and_the_chosen_mode(finalized, dataset, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finalized, run)
    card = json.loads((run / "card.json").read_text())
    card["task"] = "written by hand"
    (run / "card.json").write_text(json.dumps(card))
    assert cli(["make-card", str(run), "--data", str(dataset), "--tta-modes", "none", *FAST]) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["task"] == "written by hand" and card["predict"]["tta"] is False
    assert set(card["predict"]["measured"]) == {"none"}


def test_no_validation_cases_is_a_clear_error(finalized, dataset, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(finalized, run)
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").write_text(json.dumps({**split, "validation": []}))
    assert cli(["finalize", str(run), "--data", str(dataset), *FAST]) == 2
    assert "no validation cases" in capsys.readouterr().err


def test_average_refuses_different_networks(finalized, tmp_path, capsys) -> None:
    from lightmedseg.checkpoint import save_model
    from lightmedseg.model.factory import build_model

    _, config, _ = read_checkpoint(finalized / "model_best.safetensors")
    other = {**config, "model": {**config["model"], "num_anchors": 4}}
    save_model(tmp_path / "other.safetensors", build_model(other), other)
    assert cli(["average", "-o", str(tmp_path / "x.safetensors"), str(finalized / "model_best.safetensors"),
                str(tmp_path / "other.safetensors")]) == 2
    assert "network config differs" in capsys.readouterr().err


def test_finalize_scores_the_average_of_best_and_last(finalized, dataset, tmp_path) -> None:
    """When best and last differ, their weight average is a candidate too, and the best row is what -m RUN loads."""
    run = tmp_path / "run"
    shutil.copytree(finalized, run)
    (run / "model.safetensors").unlink()
    early = sorted((run / "snapshots").glob("*.safetensors"))[0]
    shutil.copy(early, run / "model_last.safetensors")  # a last checkpoint that differs from the best
    assert cli(["finalize", str(run), "--data", str(dataset), "--tta-modes", "none", *FAST]) == 0
    rows = _rows(run / "finalize" / "checkpoints.csv")
    assert Path(rows[-1]["model"]).name == "average_best_last.safetensors"
    best = max(rows, key=lambda r: float(r["mean_dice"]))  # max keeps the first of equal rows, as finalize does
    final, chosen = read_checkpoint(run / "model.safetensors")[0], read_checkpoint(best["model"])[0]
    assert all(torch.equal(final[k], chosen[k]) for k in final)


def test_score_checkpoints_applies_the_card_of_a_folder_without_model_files(finalized, dataset, tmp_path,
                                                                             monkeypatch) -> None:
    # a scoring folder with the run's split and a card but no model files (the models come from --models): the
    # card's TTA and post-processing must be applied, not silently dropped for predict's defaults
    import lightmedseg.training.finalize as fin

    folder = tmp_path / "scoring"
    folder.mkdir()
    for name in ("split.json", "config.yaml"):
        shutil.copy(finalized / name, folder / name)
    card = json.loads((finalized / "card.json").read_text())
    card["predict"] = {"tta": "mirror"}
    card["postprocess"] = {"keep_largest": [1]}
    (folder / "card.json").write_text(json.dumps(card))
    seen = []

    class Recorded(Exception):
        pass

    def record(model, cases, options, **choices):
        seen.append(choices)
        raise Recorded  # enough: the choices are what this test checks

    monkeypatch.setattr(fin, "predict_cases", record)
    snap = sorted((finalized / "snapshots").glob("*.safetensors"))[0]
    with pytest.raises(Recorded):
        fin.score_checkpoints(folder, dataset, [snap])
    assert seen == [{"tta": "mirror", "keep_largest": [1], "require_contact": False}]
