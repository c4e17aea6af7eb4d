"""bench/gpu_check.py end to end on the CPU at its quick sizes: every section runs, the JSON has its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("_gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_quick_on_cpu(tmp_path, capsys):
    gpu_check = load_script()
    out = tmp_path / "report.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert out.read_text().strip() in capsys.readouterr().out  # the figures are printed too

    assert report["all_ok"] and report["errors"] == {} and report["quick"]
    assert {"units", "sizes", "environment", "checks", "total_s"} <= report.keys()
    assert report["environment"]["device"] == "cpu" and report["environment"]["torch_threads"] == 1
    assert report["checks"] and all(c["ok"] for c in report["checks"])

    for name in ("blip", "clip"):
        section = report["retrievers"][name]
        for dtype in ("float32", "float16"):
            assert section[dtype]["feature_device"] == "cpu" and section[dtype]["feature_dtype"] == "float32"
            assert section[dtype]["image_norm_max_dev"] < 1e-4 and section[dtype]["encode_images_per_s"] > 0
        assert section["float16"]["dtype_effective"] == "float32"  # float16 falls back on the CPU
        assert {"image_max_abs_diff", "text_cosine_min", "text_to_image_top1_agreement_pct"} <= section["fp16_vs_fp32"].keys()

    blip2 = report["blip2"]
    assert blip2["batched_equals_single_pct"] == 100.0 and blip2["mismatches"] == []
    assert blip2["batch1_answers_per_s"] > 0 and blip2[f"batch{blip2['batch_size']}_answers_per_s"] > 0
    assert "speedup_batched_over_batch1_x" in blip2

    index = report["index"]
    assert index["hits@10_identical"] and len(index["hits@10_pct"]) == index["rounds"]
    for key in ("target_ranks_s", "argsort_loop_s", "argsort_over_target_ranks_x", "cpu_target_ranks_s",
                "cpu_over_device_target_ranks_x", "image_index_ranks_identical_pct"):
        assert index[key] > 0, key

    env = report["env"]
    assert env["cpu"]["env_steps_per_s"] > 0 and env["cpu"]["index_device"] == "cpu"


def test_gpu_check_out_directory_and_section_choice(tmp_path):
    gpu_check = load_script()
    assert gpu_check.main(["--device", "cpu", "--quick", "--only", "index", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "index" in report and "retrievers" not in report and report["all_ok"]


def test_rank_differences_must_be_float32_near_ties():
    import torch

    gpu_check = load_script()
    corpus = torch.tensor([[1.0, 0.0], [1.0, 1e-9], [0.0, 1.0], [0.6, 0.8]])
    queries = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    targets = torch.tensor([0, 2])
    # Query 0: items 0 and 1 score 1 and 1 + 1e-9 (one float32 ulp apart at most): swapping them is rounding.
    assert gpu_check.differences_are_near_ties(
        torch.tensor([[0, 0]]), torch.tensor([[1, 0]]), queries, corpus, targets) == (1, True)
    # Query 1: nothing lies near item 2's score, so a rank that moves is a bug.
    assert gpu_check.differences_are_near_ties(
        torch.tensor([[0, 0]]), torch.tensor([[0, 1]]), queries, corpus, targets) == (1, False)
    assert gpu_check.differences_are_near_ties(
        torch.tensor([[0, 0]]), torch.tensor([[0, 0]]), queries, corpus, targets) == (0, True)
