"""I3D fine-tuned end to end: trains on decoded clips, checkpoints each epoch, resumes, is cached."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mediaeval_mem.config import load_config
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.encoders.i3d import load_i3d_checkpoint, write_random_checkpoint
from mediaeval_mem.experiments.runner import holdout_ids
from mediaeval_mem.training import finetune as ft


@pytest.fixture
def setup(demo_root, runs_dir, tmp_path):
    init = write_random_checkpoint(tmp_path / "init.pt", 400, size=32)
    cfg = load_config(None, ["model.streams.0.encoder=i3d-finetune", "model.streams.0.aggregator=none", f"finetune.init={init}", "finetune.size=32",
                             "finetune.frames=9", "finetune.epochs=2", "finetune.batch_size=4", "finetune.workers=1"])
    index = open_dataset("memento10k", demo_root)
    held = holdout_ids(index, 0.2, 0)
    items = index.split("train")
    return index, [i for i in items if i.video_id not in held], [i for i in items if i.video_id in held], cfg


def test_finetune_interrupted_then_resumed_then_cached(setup, runs_dir):
    """Ctrl-C after the first epoch (through the progress callback, a public seam); the same call resumes
    after it on the one training loop, finishes, and is then found done."""
    index, fit, select, cfg = setup

    def interrupt_after_first_epoch(line: str) -> None:
        if line.startswith("fine-tuning I3D: epoch 1 "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ft.finetune_i3d(index, fit, select, cfg, torch.device("cpu"), echo=interrupt_after_first_epoch)
    folder = next(p for p in (runs_dir / "finetune" / "i3d" / index.name).iterdir() if p.is_dir())
    assert (folder / "last.safetensors").is_file() and not (folder / "best.pt").exists()

    said = []
    result = ft.finetune_i3d(index, fit, select, cfg, torch.device("cpu"), echo=said.append)
    assert said[0] == f"fine-tuning I3D: resuming from {folder / 'last.safetensors'}"
    assert [line.split()[3] for line in said[1:]] == ["2"]  # only the second epoch ran again
    assert [h["epoch"] for h in result.history] == [1, 2] and not result.cached
    net = load_i3d_checkpoint(result.checkpoint)  # the pytorch-i3d layout, strictly
    assert (result.checkpoint.parent / "best.json").is_file()
    from mediaeval_mem.encoders import encoder_recipe

    extractor = encoder_recipe("i3d-finetune", str(result.checkpoint)).transform
    assert (extractor.short_side, extractor.crop) == (ft.clip_transform(32).short_side, 32)  # the scale it trained at
    init = load_i3d_checkpoint(cfg.finetune.init)
    assert not torch.equal(net.Mixed_5c.b0.conv3d.weight, init.Mixed_5c.b0.conv3d.weight)  # it trained
    again = ft.finetune_i3d(index, fit, select, cfg, torch.device("cpu"), echo=lambda *a: None)
    assert again.cached and again.checkpoint == result.checkpoint
    # more decoding workers change no result: the same network, found done; another setting is another network
    more_workers = replace(cfg, finetune=replace(cfg.finetune, workers=cfg.finetune.workers + 1))
    assert ft.finetune_i3d(index, fit, select, more_workers, torch.device("cpu"), echo=print).checkpoint == result.checkpoint
    _, init_id = ft._init_source(cfg)
    other = replace(cfg, finetune=replace(cfg.finetune, epochs=3))
    assert ft.finetune_key(index, fit, select, init_id, other) != ft.finetune_key(index, fit, select, init_id, cfg)
    assert not (folder / "last.safetensors").exists()  # the resume state is dropped once done


def test_an_older_pickled_resume_checkpoint_is_not_read_and_fine_tuning_starts_afresh(setup, runs_dir):
    """A last.pt an older version pickled is removed unread (no unpickling); every epoch runs again."""
    index, fit, select, cfg = setup
    _, init_id = ft._init_source(cfg)
    folder = runs_dir / "finetune" / "i3d" / index.name / ft.finetune_key(index, fit, select, init_id, cfg)
    folder.mkdir(parents=True)
    torch.save({"epoch": 1, "history": []}, folder / "last.pt")
    said = []
    result = ft.finetune_i3d(index, fit, select, cfg, torch.device("cpu"), echo=said.append)
    assert said[0].startswith(f"fine-tuning I3D: {folder / 'last.pt'} is an older version's resume checkpoint")
    assert result.history[0]["epoch"] == 1 and not (folder / "last.pt").exists()


def test_augmentation_and_clip_shape(setup):
    index, fit, _, cfg = setup
    train = ft.ClipDataset(fit[:1], frames=9, size=32, train=True)
    evals = ft.ClipDataset(fit[:1], frames=9, size=32, train=False)
    torch.manual_seed(0)
    i, a, y = train[0]
    assert i == 0 and a.shape == (3, 9, 32, 32) and a.min() >= -1 and a.max() <= 1 and y == fit[0].score
    assert torch.equal(evals[0][1], evals[0][1])  # centre crop: deterministic
    crops = {train[0][1].sum().item() for _ in range(6)}
    assert len(crops) > 1  # random crops / flips
