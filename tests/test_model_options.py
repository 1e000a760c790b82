"""Issue 17's network options: initialisation, per-stage strides, deep supervision, router pooling, encoder norm;
and the other reading of Section 3.6 (``final_transposed_conv``, issue 25 lever 2).

Each option must keep shapes and gradients, the fast graph must compute the same function (forward and
backward), the ACDC plan must accept 16 x 160 x 160 crops, and models trained before the options existed
must still load and predict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightmedseg import LightMedSeg, load_config
from lightmedseg.checkpoint import load_model
from lightmedseg.model.factory import build_model
from lightmedseg.fast import fast_logits
from lightmedseg.model.network import size_divisors
from lightmedseg.model.skip_router import resample
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss, deep_supervision_weights

ACDC_STRIDES = [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
ACDC_KERNELS = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]  # the acdc_aniso preset's
OPTIONS = {
    "init": dict(upsample_init="fan_in", spb_zero_init=True, film_identity_init=True),
    "strides": dict(strides=ACDC_STRIDES),
    "deep_supervision": dict(strides=ACDC_STRIDES, deep_supervision=2),
    "pool": dict(strides=ACDC_STRIDES, router_downsample="pool"),
    "norm": dict(encoder_norm=True),
    "wide": dict(strides=ACDC_STRIDES, encoder_channels=(12, 24, 48, 96), deep_supervision=2, encoder_norm=True),
    "all_standard": dict(strides=ACDC_STRIDES, deep_supervision=3, router_downsample="pool", encoder_norm=True,
                         upsample_init="fan_in", spb_zero_init=True, film_identity_init=True, conv="standard"),
    # the other reading of Section 3.6: last decoder stage at the stem's resolution, then head + final ConvT
    "halfres": dict(final_transposed_conv=True),
    "halfres_acdc": dict(strides=ACDC_STRIDES, deep_supervision=2, router_downsample="pool", encoder_norm=True,
                         upsample_init="fan_in", spb_zero_init=True, film_identity_init=True,
                         final_transposed_conv=True),
    # per-level kernels (issue 28): in-plane 1 x 3 x 3 kernels on the thick-slice levels, nnU-Net's rule
    "aniso": dict(strides=ACDC_STRIDES, kernel_sizes=ACDC_KERNELS, deep_supervision=2, router_downsample="pool",
                  encoder_norm=True, upsample_init="fan_in", spb_zero_init=True, film_identity_init=True),
    "aniso_halfres": dict(strides=ACDC_STRIDES, kernel_sizes=ACDC_KERNELS, final_transposed_conv=True),
    # the paper-count reading of "Standard Conv" (issue 28): Eqs. 7 and 19 dense as well, on the ACDC plan
    "standard_paper": dict(strides=ACDC_STRIDES, deep_supervision=2, router_downsample="pool", encoder_norm=True,
                           upsample_init="fan_in", spb_zero_init=True, film_identity_init=True, conv="standard",
                           dense_local_convs=True),
    "dense_local_aniso": dict(strides=ACDC_STRIDES, kernel_sizes=ACDC_KERNELS, dense_local_convs=True),
}
FP32_ATOL = 1e-4


def make(name: str, seed: int = 0) -> LightMedSeg:
    torch.manual_seed(seed)
    return LightMedSeg(1, 4, **OPTIONS[name])


def as_list(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_fast_graph_matches_reference_forward_and_backward(name: str) -> None:
    model = make(name)
    x = torch.randn(2, 1, 16, 32, 48)
    model.eval()
    with torch.no_grad():
        assert (fast_logits(model, x) - model(x)).abs().max().item() < FP32_ATOL
        assert (fast_logits(model, x[:1], inplace=True) - model(x[:1])).abs().max().item() < FP32_ATOL
    model.train()
    ref, fast = as_list(model(x)), as_list(fast_logits(model, x))
    assert [r.shape for r in ref] == [f.shape for f in fast]
    for r, f in zip(ref, fast):
        assert (r - f).abs().max().item() < FP32_ATOL
    params = [p for p in model.parameters()]
    g_ref = torch.autograd.grad(sum(r.square().mean() for r in ref), params)
    g_fast = torch.autograd.grad(sum(f.square().mean() for f in fast), params)
    for a, b in zip(g_ref, g_fast):
        assert (a - b).abs().max().item() < 1e-4 * max(1.0, a.abs().max().item())


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = make(name).train()
    out = as_list(model(torch.randn(2, 1, 16, 32, 32)))
    sum(o.square().mean() for o in out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_acdc_plan_shapes_and_divisors() -> None:
    config = load_config("acdc")
    assert size_divisors(config["model"]) == (4, 16, 16)
    model = build_model(config)
    model.train()
    out = model(torch.randn(1, 1, 16, 160, 160))
    # deep supervision: full resolution first, then the two coarser decoder stages (in-plane halved only)
    assert [tuple(o.shape[2:]) for o in out] == [(16, 160, 160), (16, 80, 80), (16, 40, 40)]
    model.eval()
    assert model(torch.randn(1, 1, 8, 32, 48)).shape == (1, 4, 8, 32, 48)  # depth 8: a multiple of 4
    with pytest.raises(ValueError, match=r"multiple of \(4, 16, 16\)"):
        model(torch.randn(1, 1, 6, 32, 32))


def test_paper_preset_keeps_the_literal_network() -> None:
    model = build_model(load_config("acdc_paper"))
    assert model.size_divisor == (16, 16, 16) and len(model.decoder.aux_heads) == 0
    with pytest.raises(ValueError, match="multiple of"):
        model(torch.randn(1, 1, 8, 32, 32))


def test_finetune_preset_is_the_shipped_network_and_the_long_runs_recipe() -> None:
    """`--preset acdc_finetune --init-weights acdc` is accepted, and the preset is the recipe on record."""
    from lightmedseg.checkpoint import CheckpointError, read_checkpoint
    from lightmedseg.training.resume import initial_weights

    config = load_config("acdc_finetune")
    weights, path = initial_weights("acdc", config)  # refuses a network that differs, naming the keys
    assert path.parent.name == "acdc" and build_model(config).load_state_dict(weights) is not None
    with pytest.raises(CheckpointError, match="different network"):
        initial_weights("acdc", load_config("acdc"))  # the plain preset is not the shipped network
    recorded = read_checkpoint(path)[1]  # the shipped weights' own config: the recipe of the run that made them
    assert {k: config["data"][k] for k in recorded["data"]} == recorded["data"]
    recipe = ("epochs", "iterations_per_epoch", "batch_size", "optimizer", "scheduler", "loss", "grad_clip", "val_every")
    assert {k: config["train"][k] for k in recipe} == {k: recorded["train"][k] for k in recipe}
    assert config["infer"]["tta"] == "rot90"


def test_bad_strides_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="need 4 entries"):
        LightMedSeg(1, 4, strides=[2, 2, 2])
    with pytest.raises(ValueError, match="positive int or three"):
        LightMedSeg(1, 4, strides=[[1, 2], 2, 2, 2])
    with pytest.raises(ValueError, match="deep_supervision"):
        LightMedSeg(1, 4, deep_supervision=4)
    with pytest.raises(ValueError, match="upsample_init"):
        LightMedSeg(1, 4, upsample_init="xavier")


def test_initialisation_starts_film_identity_spb_zero_and_convt_at_true_fan_in() -> None:
    torch.manual_seed(0)
    model = LightMedSeg(1, 4, **OPTIONS["init"], encoder_channels=(32, 64, 128, 256))
    for stage in model.encoder.stages:
        assert stage.film.w_gamma.weight.abs().max() == 0 and stage.film.w_beta.weight.abs().max() == 0
    for stage in model.decoder.stages:
        assert stage.spb.proj.weight.abs().max() == 0 and stage.up.bias.abs().max() == 0
        c_in = stage.up.weight.shape[0]
        # N(0, 1/C_in): the output variance of a stride = kernel transposed conv equals the input's
        assert abs(stage.up.weight.std().item() * c_in**0.5 - 1.0) < 0.1
    torch.manual_seed(0)
    default = LightMedSeg(1, 4, encoder_channels=(32, 64, 128, 256))
    c_in = default.decoder.stages[0].up.weight.shape[0]
    assert default.decoder.stages[0].up.weight.std().item() * c_in**0.5 < 0.5  # PyTorch's default shrinks the signal


def test_router_pooling_averages_finer_maps() -> None:
    x = torch.arange(16.0).view(1, 1, 1, 4, 4)
    pooled = resample(x, (1, 2, 2), "pool")
    assert torch.allclose(pooled[0, 0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    assert resample(x, (1, 8, 8), "pool").shape[-1] == 8  # coarser maps are still interpolated


def test_deep_supervision_loss_downsamples_the_target() -> None:
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    base = LightMedSegLoss(4, boundary=0.0)
    loss = DeepSupervisionLoss(base)
    target = torch.zeros(1, 1, 4, 8, 8, dtype=torch.long)
    target[..., 2:6, 2:6] = 1
    perfect = [(torch.nn.functional.one_hot(t[:, 0], 4).movedim(-1, 1).float() * 20.0)
               for t in (target, target[..., ::2, ::2])]
    assert loss(perfect, target).item() < 1e-3  # the coarse output is scored on the downsampled target
    wrong = [perfect[0], perfect[1].flip(1)]
    assert loss(wrong, target).item() > 0.5
    single = torch.randn(1, 4, 4, 8, 8)
    assert loss(single, target).item() == pytest.approx(base(single, target).item())


@pytest.mark.parametrize("source", ["acdc_v1.safetensors", "acdc_session1.safetensors"])
def test_models_shipped_before_the_options_still_load_and_predict(source: str, legacy_models: dict[str, Path]) -> None:
    """Fixtures with the stored configs of acdc_v1 and the first shipped acdc (built from their recipes,
    tests/legacy_fixtures.py)."""
    model, config = load_model(legacy_models[source])
    assert "strides" not in config["model"]  # an old config: the paper's network
    assert "final_transposed_conv" not in config["model"] and model.decoder.final_up is None
    assert "kernel_sizes" not in config["model"] and model.kernel_sizes is None
    assert all(m.kernel_size == (3, 3, 3) for m in model.modules()
               if isinstance(m, torch.nn.Conv3d) and m.kernel_size[0] > 1 and m.kernel_size != (5, 5, 5))
    assert model.size_divisor == (16, 16, 16)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 32, 32)).shape == (1, 4, 16, 32, 32)


def test_predictor_pads_a_thin_volume_up_to_the_training_window() -> None:
    """A 10-slice stack is predicted inside 16-slice windows, as it was seen in training (SpatialPadd)."""
    import numpy as np

    from lightmedseg.inference.predictor import Predictor

    config = load_config("acdc")
    config["infer"]["roi_size"] = [16, 32, 32]
    config["labels"] = {"background": 0, "RV": 1, "Myo": 2, "LV": 3}
    shapes = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape[2:]))
        return torch.zeros(x.shape[0], 4, *x.shape[2:])

    pred = Predictor(config, forward).predict_image(np.random.rand(1, 10, 40, 36).astype(np.float32))
    assert pred.labels.shape == (10, 40, 36)
    assert set(shapes) == {(16, 32, 32)}


def test_init_weights_compare_networks_not_spellings(tmp_path) -> None:
    """--init-weights accepts weights whose config omits defaults or used another initialisation,
    and still refuses a different network."""
    from lightmedseg.checkpoint import CheckpointError, save_model
    from lightmedseg.training.resume import initial_weights

    old_style = {"in_channels": 1, "num_classes": 4}  # written before the options existed
    save_model(tmp_path / "m.safetensors", LightMedSeg(**old_style), {"model": old_style})
    same = {"model": {**old_style, "strides": [[2, 2, 2]] * 4, "upsample_init": "fan_in", "encoder_norm": False}}
    weights, _ = initial_weights(tmp_path / "m.safetensors", same)
    assert set(weights) == set(LightMedSeg(**old_style).state_dict())
    with pytest.raises(CheckpointError, match="encoder_norm"):
        initial_weights(tmp_path / "m.safetensors", {"model": {**old_style, "encoder_norm": True}})


def test_wide_preset_reaches_the_papers_parameter_count() -> None:
    """acdc_wide: the acdc network at 1.5x every stage width, within 10% of the paper's 0.48M (0.26M as written)."""
    narrow, wide = load_config("acdc"), load_config("acdc_wide")
    assert {k: v for k, v in wide["model"].items() if k != "encoder_channels"} == \
        {k: v for k, v in narrow["model"].items() if k != "encoder_channels"}
    counts = {}
    for name, cfg in (("narrow", narrow), ("wide", wide)):
        model = build_model({**cfg, "model": {**cfg["model"], "in_channels": 4}})
        counts[name] = sum(p.numel() for p in model.parameters())
    assert abs(counts["wide"] - 480_000) / 480_000 < 0.10
    assert counts["narrow"] < 300_000
    out = build_model(wide).eval()(torch.randn(1, 1, 16, 64, 64))
    assert out.shape == (1, 4, 16, 64, 64)


# -- final_transposed_conv: the other reading of Section 3.6 ---------------------------------------------------------

@pytest.mark.parametrize("strides, size", [(None, (32, 32, 48)), (ACDC_STRIDES, (8, 32, 48))])
def test_final_transposed_conv_keeps_the_last_stage_at_the_stems_resolution(strides, size) -> None:
    """Output = input size; stage 4 (and its path weights) at the stem's grid; the final ConvT undoes the stem."""
    torch.manual_seed(0)
    model = LightMedSeg(1, 4, strides=strides, final_transposed_conv=True).eval()
    literal = LightMedSeg(1, 4, strides=strides).eval()
    stem = tuple(model.strides[0])
    up = model.decoder.final_up
    assert tuple(up.stride) == tuple(up.kernel_size) == stem and up.in_channels == up.out_channels == 4
    assert tuple(model.decoder.stages[-1].up.stride) == (1, 1, 1)  # a 1x1x1 conv C_3 -> C_4: no upsampling
    assert model.decoder.strides[:-1] == literal.decoder.strides[:-1] and model.size_divisor == literal.size_divisor
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        logits, extras = model.forward_with_intermediates(x)
    assert logits.shape == (1, 4, *size)
    stem_grid = tuple(s // f for s, f in zip(size, stem))
    assert tuple(extras["decoder_path_weights"][-1].shape[2:]) == stem_grid
    assert tuple(extras["decoder_path_weights"][-2].shape[2:]) == stem_grid  # stage 3 was already there
    with torch.no_grad():
        assert tuple(literal.forward_with_intermediates(x)[1]["decoder_path_weights"][-1].shape[2:]) == size


def test_final_transposed_conv_round_trips_through_a_model_file(tmp_path) -> None:
    from lightmedseg.checkpoint import save_model

    torch.manual_seed(0)
    model = LightMedSeg(1, 4, **OPTIONS["halfres_acdc"]).eval()
    assert model.config["final_transposed_conv"] is True
    assert "final_up.weight" in model.state_dict()  # stored beside head.*, like the other decoder parameters
    path = save_model(tmp_path / "m.safetensors", model, {"model": model.config})
    loaded, config = load_model(path)
    assert config["model"]["final_transposed_conv"] is True and loaded.decoder.final_up is not None
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
    with pytest.raises(RuntimeError, match="final_up"):  # the two readings' weights are not interchangeable
        LightMedSeg(1, 4, **{**OPTIONS["halfres_acdc"], "final_transposed_conv": False}).load_state_dict(model.state_dict())


def test_halfres_preset_is_acdc_with_the_option_only() -> None:
    acdc, half = load_config("acdc"), load_config("acdc_halfres")
    assert half["model"] == {**acdc["model"], "final_transposed_conv": True}
    assert {k: v for k, v in half.items() if k not in ("model", "name")} == \
        {k: v for k, v in acdc.items() if k not in ("model", "name")}
    model = build_model(half).train()
    out = model(torch.randn(1, 1, 16, 160, 160))
    # deep supervision heads as in acdc: full resolution first, then the two coarser decoder stages
    assert [tuple(o.shape[2:]) for o in out] == [(16, 160, 160), (16, 80, 80), (16, 40, 40)]


@pytest.mark.parametrize("form", ["fast", "reference"])
def test_final_transposed_conv_converts_to_openvino(form, monkeypatch) -> None:
    """Both converted forms (the fast one-sample InferenceGraph, the reference forward) reproduce the module."""
    pytest.importorskip("openvino")
    from lightmedseg.inference import conversion
    from lightmedseg.inference.openvino_convert import convert_module

    monkeypatch.setenv(conversion.OPENVINO_GRAPH_ENV, form)
    torch.manual_seed(0)
    model = LightMedSeg(4, 4, final_transposed_conv=True).eval()  # the brats-like isotropic network
    config = {"model": model.config}
    ov_model, worst = convert_module(model, config)
    assert worst <= conversion.ORT_ATOL
    import openvino as ov

    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        ref = model(x)
    out = torch.from_numpy(compiled(x.numpy())[0])
    assert out.shape == ref.shape and (out - ref).abs().max().item() <= conversion.ORT_ATOL


@pytest.mark.parametrize("strides", [None, ACDC_STRIDES])
def test_default_reading_weights_map_onto_final_transposed_conv(strides, tmp_path) -> None:
    """lightmedseg.model.readings: a trained default-reading model starts a final_transposed_conv run.

    The last stage's stem-stride ConvT becomes the mean of its taps, and final_up copies each class to every
    tap (nearest upsampling of the logits); every other tensor is unchanged and the result loads strictly.
    --init-weights does this for exactly that one difference, and refuses the reverse."""
    from lightmedseg.checkpoint import CheckpointError, save_model
    from lightmedseg.model.readings import to_final_transposed_conv
    from lightmedseg.training.resume import initial_weights

    torch.manual_seed(0)
    literal = LightMedSeg(1, 4, strides=strides)
    halfres = LightMedSeg(1, 4, strides=strides, final_transposed_conv=True)
    weights = literal.state_dict()
    mapped = to_final_transposed_conv(weights)
    halfres.load_state_dict(mapped)  # strict: every key and shape
    last = f"decoder.{len(literal.decoder.stages) - 1}.up.weight"
    assert torch.allclose(mapped[last][:, :, 0, 0, 0], weights[last].mean(dim=(2, 3, 4)))
    assert all(torch.equal(mapped[k], v) for k, v in weights.items() if k != last)
    logits = torch.randn(1, 4, 3, 5, 6)
    stem = tuple(halfres.decoder.final_up.stride)
    nearest = logits
    for axis, factor in enumerate(stem):
        nearest = nearest.repeat_interleave(factor, dim=2 + axis)
    assert torch.allclose(halfres.decoder.final_up(logits), nearest)
    with pytest.raises(ValueError, match="already"):
        to_final_transposed_conv(mapped)

    config = {"in_channels": 1, "num_classes": 4, "strides": strides}
    save_model(tmp_path / "literal.safetensors", literal, {"model": config})
    save_model(tmp_path / "halfres.safetensors", halfres, {"model": {**config, "final_transposed_conv": True}})
    started, _ = initial_weights(tmp_path / "literal.safetensors", {"model": {**config, "final_transposed_conv": True}})
    assert set(started) == set(mapped) and torch.equal(started["final_up.weight"], mapped["final_up.weight"])
    with pytest.raises(CheckpointError, match="final_transposed_conv"):
        initial_weights(tmp_path / "halfres.safetensors", {"model": config})


# -- kernel_sizes: per-level kernels (issue 28) ---------------------------------------------------------------------

def _spatial_convs(module: torch.nn.Module) -> list[torch.nn.Conv3d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size != (1, 1, 1)]


@pytest.mark.parametrize("final_transposed_conv", [False, True])
def test_kernel_sizes_put_each_level_s_kernel_on_its_convolutions(final_transposed_conv: bool) -> None:
    """Level 0 (F_0's grid: stem's cheap conv, LSPM, encoder stage 1) and the input's grid (stem conv, the last
    decoder stage) get 1 x 3 x 3 (the LSPM's 5^3 becomes 1 x 5 x 5); the deeper levels keep 3^3; the anchor
    detector's convs are not per level and keep 3^3. 'Same' padding keeps every size."""
    model = LightMedSeg(1, 4, strides=ACDC_STRIDES, kernel_sizes=ACDC_KERNELS,
                        final_transposed_conv=final_transposed_conv)
    assert model.stem.conv.primary.kernel_size == (1, 3, 3) and model.stem.conv.cheap.kernel_size == (1, 3, 3)
    assert model.lspm.texture.smooth.conv.kernel_size == (1, 5, 5)
    assert {c.kernel_size for c in _spatial_convs(model.lspm.gating)} == {(1, 3, 3)}
    stages = [{c.kernel_size for c in _spatial_convs(s)} for s in model.encoder.stages]
    assert stages == [{(1, 3, 3)}, {(3, 3, 3)}, {(3, 3, 3)}, {(3, 3, 3)}]
    decoder = [{c.kernel_size for c in _spatial_convs(s)} for s in model.decoder.stages]
    # stage j's output is on level n-2-j; the last on the input's grid, which is level 0 with final_transposed_conv
    assert decoder == [{(3, 3, 3)}, {(3, 3, 3)}, {(1, 3, 3)}, {(1, 3, 3)}]
    assert {c.kernel_size for c in _spatial_convs(model.anchor_detector)} == {(3, 3, 3)}
    assert all(c.padding == tuple(k // 2 for k in c.kernel_size) for c in _spatial_convs(model) if c.stride == (1, 1, 1))
    x = torch.randn(1, 1, 16, 32, 32)
    assert model.eval()(x).shape == (1, 4, 16, 32, 32)
    baseline = LightMedSeg(1, 4, strides=ACDC_STRIDES, final_transposed_conv=final_transposed_conv)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in baseline.parameters())


def test_kernel_sizes_all_cubic_is_the_paper_network() -> None:
    """Writing the default out (3 everywhere) builds the same parameters, in the same order, as leaving it None."""
    torch.manual_seed(0)
    default = LightMedSeg(1, 4, strides=ACDC_STRIDES)
    torch.manual_seed(0)
    explicit = LightMedSeg(1, 4, strides=ACDC_STRIDES, kernel_sizes=[3] * 5)
    a, b = default.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert default.config["kernel_sizes"] is None and explicit.config["kernel_sizes"] == [[3, 3, 3]] * 5


@pytest.mark.parametrize("kernel_sizes, message", [
    ([[1, 3, 3]] * 4, "need 5 entries"),
    ([[1, 3, 3]] * 4 + [[2, 3, 3]], "odd positive"),
    ([[1, 3]] * 5, "odd positive"),
])
def test_kernel_sizes_refused_with_the_reason(kernel_sizes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LightMedSeg(1, 4, strides=ACDC_STRIDES, kernel_sizes=kernel_sizes)


def test_acdc_aniso_preset_builds_the_in_plane_network(tmp_path: Path) -> None:
    """The preset and a --set override give the same network; its config round-trips through a model file."""
    from lightmedseg.checkpoint import save_model

    config = load_config("acdc_aniso")
    assert config["model"]["kernel_sizes"] == ACDC_KERNELS
    model = build_model(config)
    assert model.stem.conv.primary.kernel_size == (1, 3, 3)
    overridden = load_config("acdc", overrides=[f"model.kernel_sizes={ACDC_KERNELS}".replace(" ", "")])
    assert overridden["model"]["kernel_sizes"] == ACDC_KERNELS
    path = save_model(tmp_path / "aniso.safetensors", model, config)
    loaded, stored = load_model(path)
    assert stored["model"]["kernel_sizes"] == ACDC_KERNELS
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model.eval()(x))
