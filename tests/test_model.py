"""The network: shapes, gradients, ranges, determinism, presets, input checks, paper parameter counts."""

from __future__ import annotations

import pytest
import torch

from lightmedseg import LightMedSeg
from lightmedseg.config import available_presets, available_variants, load_config, load_variant
from lightmedseg.model import anchor_offset_maps
from lightmedseg.model.factory import build_model
from lightmedseg.tools.profiling import PAPER_MODULE_PARAMS


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "in_ch,n_cls,size",
    [(4, 4, (32, 32, 32)), (1, 4, (16, 160, 160)), (2, 5, (16, 32, 48)), (3, 2, (48, 16, 32))],
)
def test_output_shape(in_ch: int, n_cls: int, size: tuple[int, int, int]) -> None:
    model = LightMedSeg(in_ch, n_cls).eval()
    with torch.no_grad():
        y = model(torch.randn(1, in_ch, *size))
    assert y.shape == (1, n_cls, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", ["ghost", "standard", "k16", "no_lspm", "no_anchors", "no_router"])
def test_every_parameter_gets_a_gradient(variant: str) -> None:
    cfg = load_config("demo", variant=variant)
    model = LightMedSeg(**cfg["model"])
    x = torch.randn(2, cfg["model"]["in_channels"], 32, 32, 32)
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_intermediates_ranges_and_normalisation() -> None:
    model = LightMedSeg(4, 3, num_anchors=8).eval()
    x = torch.randn(2, 4, 32, 48, 32)
    with torch.no_grad():
        logits, extra = model.forward_with_intermediates(x)
    s, t = extra["anchors"], extra["texture"]
    assert s.shape == (2, 8, 3) and s.min() >= 0 and s.max() <= 1
    assert t.shape == (2, 1, 16, 24, 16) and t.min() >= 0 and t.max() <= 1
    ones = lambda w: torch.ones_like(w.sum(1))  # noqa: E731
    assert torch.allclose(extra["lspm_weights"].sum(1), ones(extra["lspm_weights"]), atol=1e-5)
    assert len(extra["router_weights"]) == 2 and extra["router_weights"][0].shape[1] == 4
    for w in extra["router_weights"] + extra["decoder_path_weights"]:
        assert torch.allclose(w.sum(1), ones(w), atol=1e-5)
    assert [w.shape[2:] for w in extra["decoder_path_weights"]] == [
        (4, 6, 4), (8, 12, 8), (16, 24, 16), (32, 48, 32)
    ]
    # logits are unchanged by asking for intermediates
    assert torch.equal(logits, model(x))


def test_eval_mode_is_deterministic() -> None:
    model = LightMedSeg(4, 4).eval()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_anchors_depend_on_the_input() -> None:
    model = LightMedSeg(4, 4).eval()
    with torch.no_grad():
        _, a = model.forward_with_intermediates(torch.randn(1, 4, 32, 32, 32))
        _, b = model.forward_with_intermediates(torch.randn(1, 4, 32, 32, 32) * 3 + 1)
    assert not torch.allclose(a["anchors"], b["anchors"])


@pytest.mark.parametrize("size", [(30, 32, 32), (32, 32, 8), (16, 24, 16)])
def test_bad_size_is_a_clear_error(size: tuple[int, int, int]) -> None:
    model = LightMedSeg(1, 2)
    with pytest.raises(ValueError, match=r"multiple of \(16, 16, 16\)"):
        model(torch.randn(1, 1, *size))


def test_wrong_channel_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expects 4 input channels, got 2"):
        LightMedSeg(4, 2)(torch.randn(1, 2, 16, 16, 16))


@pytest.mark.parametrize("preset", available_presets())
@pytest.mark.parametrize("variant", available_variants())
def test_every_preset_and_variant_builds(preset: str, variant: str) -> None:
    cfg = load_config(preset, variant=variant)
    # The chosen variant wins over every preset of the inherit chain (acdc and demo inherit brats).
    assert {k: cfg["model"][k] for k in load_variant(variant)} == load_variant(variant)
    assert cfg["variant"] == variant and cfg["name"] == preset
    model = LightMedSeg(**cfg["model"])
    assert model.config["conv"] == cfg["model"]["conv"]


def test_ablations_remove_modules_rather_than_zeroing_them() -> None:
    assert LightMedSeg(4, 4, use_lspm=False).lspm is None
    no_anchor = LightMedSeg(4, 4, use_anchors=False)
    assert no_anchor.anchor_detector is None
    assert all(s.film is None for s in no_anchor.encoder.stages)
    assert all(d.spb is None for d in no_anchor.decoder.stages)
    assert LightMedSeg(4, 4, use_skip_router=False).skip_router is None
    std = LightMedSeg(4, 4, conv="standard")
    assert isinstance(std.stem.conv, torch.nn.Conv3d)


def test_module_parameter_counts_match_the_paper_within_3_percent() -> None:
    model = LightMedSeg(4, 4)  # the paper's BraTS configuration, K = 8
    modules = dict(model.named_modules())
    assert set(PAPER_MODULE_PARAMS) == {
        "anchor_detector", "lspm", "lspm.texture", "lspm.gating", "lspm.mixer", "skip_router"
    }
    for name, expected in PAPER_MODULE_PARAMS.items():
        got = n_params(modules[name])
        assert abs(got - expected) / expected <= 0.03, (name, got, expected)


def test_anchor_count_deltas_follow_table_4() -> None:
    base = n_params(LightMedSeg(4, 4, num_anchors=8))
    k16 = n_params(LightMedSeg(4, 4, num_anchors=16))
    k32 = n_params(LightMedSeg(4, 4, num_anchors=32))
    # Table 4: +0.01M for K=16 and +0.04M for K=32 (rounded to 0.01M)
    assert round((k16 - base) / 1e6, 2) == 0.01
    assert 0.025e6 <= k32 - base <= 0.045e6


def test_standard_conv_variant_is_larger() -> None:
    assert n_params(LightMedSeg(4, 4, conv="standard")) > 1.3 * n_params(LightMedSeg(4, 4, conv="ghost"))


def test_standard_paper_variant_has_the_papers_count_for_standard_conv() -> None:
    """Tables 1-2 give "Standard Conv" 0.66M; GhostConv3D dense plus dense Eqs. 7 and 19 reach it (issue 28)."""
    model = build_model(load_config("brats", variant="standard_paper"))
    assert model.conv == "standard" and model.dense_local_convs
    assert round(n_params(model) / 1e6, 2) == 0.66
    assert all(s.detail.conv.groups == 1 for s in model.encoder.stages)
    assert all(s.path_local.conv.groups == 1 for s in model.decoder.stages)
    # the default keeps Sections 3.4 and 3.6's depthwise convs, and the `standard` variant its 0.37M
    assert all(s.detail.conv.groups == s.detail.conv.in_channels for s in LightMedSeg(4, 4).encoder.stages)
    assert round(n_params(LightMedSeg(4, 4, conv="standard")) / 1e6, 2) == 0.37


def test_anchor_offset_maps_follow_eq_14() -> None:
    anchors = torch.tensor([[[0.25, 0.5, 0.75], [0.0, 1.0, 0.5]]])
    p = anchor_offset_maps(anchors, (2, 4, 8))
    d, h, w = 1, 3, 5
    expected = (d / 2 - 0.25) + (h / 4 - 0.5) + (w / 8 - 0.75)
    assert p.shape == (1, 2, 2, 4, 8)
    assert p[0, 0, d, h, w].item() == pytest.approx(expected)
    assert p[0, 1, 0, 0, 0].item() == pytest.approx(-1.5)


def test_forward_returns_one_tensor_and_a_list_only_for_deep_supervision_training() -> None:
    model = LightMedSeg(1, 3, deep_supervision=2)
    x = torch.randn(1, 1, 32, 32, 32)
    outputs = model.train()(x)
    assert isinstance(outputs, list) and [o.shape[2] for o in outputs] == [32, 16, 8]
    logits, extra = model.forward_with_intermediates(x)  # the full-resolution logits in every mode
    assert torch.equal(logits, outputs[0]) and len(extra["decoder_path_weights"]) == 4
    assert isinstance(model.eval()(x), torch.Tensor)
    assert isinstance(LightMedSeg(1, 3).train()(x), torch.Tensor)


def test_config_is_the_constructor_signature_and_rebuilds_the_model() -> None:
    import inspect

    model = LightMedSeg(1, 3, encoder_channels=(8, 16, 32), strides=[[1, 2, 2], 2, 2], use_skip_router=False)
    params = [p for p in inspect.signature(LightMedSeg.__init__).parameters if p != "self"]
    assert list(model.config) == params
    assert model.config["strides"] == [[1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert model.config["encoder_channels"] == [8, 16, 32] and model.config["router_levels"] == 2
    clone = LightMedSeg(**model.config)
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())
    assert model.size_divisor == clone.decoder.size_divisor == (4, 8, 8)


def test_decoder_mirrors_the_encoder_and_selects_skips() -> None:
    model = LightMedSeg(1, 3, encoder_channels=(8, 16, 32, 64, 96), strides=[2, [1, 2, 2], 2, 2, 2], router_levels=3)
    dec = model.decoder
    assert dec.widths == (96, 64, 32, 16, 8)
    assert dec.strides == [(2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert dec.skip_sources == ["router", "router", "router", 0, "stem"]
    assert [a.proj.in_channels for a in dec.skip_adapters] == [64, 64, 64, 8, 8]
    assert model.size_divisor == (16, 32, 32)
    assert model.eval()(torch.randn(1, 1, 16, 32, 32)).shape == (1, 3, 16, 32, 32)


def test_checkpoint_names_are_the_pre_decoder_ones_and_both_forms_load() -> None:
    from lightmedseg.model.network import _from_checkpoint_name, _to_checkpoint_name

    model = LightMedSeg(1, 3, deep_supervision=1)
    state = model.state_dict()
    names = list(state)
    tail = [n.split(".")[0] for n in names[names.index("skip_adapters.0.proj.weight"):]]
    assert tail[0] == "skip_adapters" and tail[-1] == "aux_heads"
    assert "decoder.0.up.weight" in state and "bottleneck.weight" in state and "head.weight" in state
    assert not any(n.startswith(("decoder.stages", "decoder.skip", "decoder.head")) for n in names)
    # parameters() keeps the order of the checkpoint names (optimiser state is stored by position)
    module_names = [n for n, _ in model.named_parameters()]
    assert [_to_checkpoint_name(n) for n in module_names] == [n for n in names if n in map(_to_checkpoint_name, module_names)]
    modern = {_from_checkpoint_name(k): v for k, v in state.items()}
    assert "decoder.stages.0.up.weight" in modern
    for form in (state, modern):
        clone = LightMedSeg(1, 3, deep_supervision=1)
        clone.load_state_dict(form)
        assert all(torch.equal(a, b) for a, b in zip(clone.parameters(), model.parameters()))
    wrapped = torch.nn.Sequential(model)  # under a prefix (FastTrainForward, DDP): the same names
    assert "0.decoder.0.up.weight" in wrapped.state_dict()
    import io
    import pickle

    buffer = io.BytesIO()
    torch.save(model, buffer)  # the hooks pickle (a whole-module save, multiprocessing)
    assert list(pickle.loads(pickle.dumps(model)).state_dict()) == names
