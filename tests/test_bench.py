"""The benchmark scripts run and report every figure they promise (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def _last_json(cmd: list[str], tmp_path) -> dict:
    out = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bench_train_reports_its_keys(tmp_path):
    figures = _last_json([str(REPO / "bench" / "train.py"), "--videos", "48", "--frames", "6", "--dim", "32",
                          "--max-steps", "4", "--workdir", str(tmp_path / "w")], tmp_path)
    assert {"epoch_s", "data_wait_share", "peer_epoch_s", "peer_data_wait_share"} <= set(figures)
    assert figures["steps_measured"] == 4 and figures["steps_per_epoch"] == 6
    assert 0 <= figures["data_wait_share"] < 1 and figures["epoch_s"] > 0


def test_bench_extract_reports_its_keys(tmp_path):
    figures = _last_json([str(REPO / "bench" / "extract.py"), "--encoder", "clip-demo", "--videos", "1",
                          "--batch-size", "32", "--model-seconds", "1", "--naive-frames", "5", "--size", "320x180",
                          "--workdir", str(tmp_path / "w")], tmp_path)
    keys = {"e2e_fps", "model_fps", "naive_fps", "decode_fps", "bound_fps", "e2e_over_model", "e2e_over_bound",
            "e2e_over_naive", "peak_rss_mb_n", "peak_rss_mb_4n"}
    assert keys <= set(figures) and all(figures[k] > 0 for k in keys) and figures["size"] == "320x180"
    # the ratio of the unrounded rates, rounded: within what rounding both rates to 0.01 and it to 0.001 allows
    ratio = figures["e2e_fps"] / figures["model_fps"]
    assert abs(figures["e2e_over_model"] - ratio) <= 0.0005 + ratio * (0.005 / figures["e2e_fps"] + 0.005 / figures["model_fps"])
    bound = 1 / (1 / figures["model_fps"] + 1 / figures["decode_fps"])  # a CPU: the two share its cores
    assert abs(figures["bound_fps"] - bound) <= 0.01 * bound


def test_bench_concurrent_reports_its_keys(tmp_path):
    figures = _last_json([str(REPO / "bench" / "concurrent_runs.py"), "--counts", "1,2", "--scale", "0.1",
                          "--set", "train.epochs=1", "--no-warmup", "--workdir", str(tmp_path / "w")], tmp_path)
    assert {"alone_s", "total_s_2", "fair_share_2", "cpu_s_per_run_1", "cpu_s_per_run_2"} <= set(figures)
    assert figures["fair_share_2"] == round(2 * figures["alone_s"] / figures["total_s_2"], 3)
    assert len(set(figures["srocc_2"])) == 1  # the same config and seed: the same result, however many ran at once


def test_bench_frontier_reports_its_keys(tmp_path):
    """bench/frontier.py on the stand-ins of a frame encoder, a video transformer and the VLM."""
    names = ["siglip2-demo", "videomae-demo", "qwen2.5-vl-demo"]
    figures = _last_json([str(REPO / "bench" / "frontier.py"), "--encoders", ",".join(names), "--seconds", "0.2",
                          "--batch-size", "4", "--device", "cpu"], tmp_path)
    assert [figures[n]["frames_per_forward"] for n in names] == [4, 4, 8]  # a batch; the demo VideoMAE's 4-frame clip; 8
    for n in names:
        r = figures[n]
        assert r["fps"] > 0 and r["tflops"] > 0 and r["peak_mem_mb"] > 0 and r["forwards"] >= 1
        assert abs(r["fps"] * r["seconds"] - r["forwards"] * r["frames_per_forward"]) < 1e-6 * r["fps"] + 1e-6
