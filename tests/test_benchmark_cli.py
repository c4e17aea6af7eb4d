import csv
import json
import subprocess
import sys

import pytest

from chatir_env.cli import COMMANDS, build_parser, main
from chatir_env.config import ConfigError
from chatir_env.eval.benchmark import run_benchmark


def small_config(tmp_path, **extra):
    return {
        "name": "t", "max_rounds": 4, "num_targets": 40,
        "worlds": [{"name": "exact", "world": "shapes_oracle", "args": {"corpus_size": 2000, "num_targets": 100}}],
        "questioners": [{"name": "caption", "questioner": "caption_only"},
                        {"name": "template", "questioner": "shapes_template"}],
        "out_dir": str(tmp_path / "out"), **extra,
    }


def test_benchmark_writes_json_csv_png_with_intervals(tmp_path):
    assert run_benchmark(small_config(tmp_path), bootstrap=50, progress=False) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    caption, template = results["results"]["exact/caption"], results["results"]["exact/template"]
    assert caption["queries"] == 40 and caption["rounds"] == 4
    assert len(set(caption["hits@10"])) == 1, "asking nothing leaves Hits@10 flat"
    # Four informative questions on the exact world must find more targets than the caption alone.
    assert template["hits@10"][4] > caption["hits@10"][4] + 10
    lo, hi = template["hits@10_ci95"]
    assert all(low <= high for low, high in zip(lo, hi))
    assert results["config"]["name"] == "t"  # the run records its config next to its results
    rows = list(csv.DictReader((out / "hits_at_10.csv").open()))
    assert len(rows) == 2 * 5 and rows[0]["run"] == "exact/caption"
    assert (out / "hits_at_10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| exact/template |" in (out / "results.md").read_text()


def test_num_targets_is_a_seeded_random_sample_recorded_in_results(tmp_path):
    import hashlib

    import numpy as np

    from chatir_env.worlds import build_world

    caption_only = [{"name": "caption", "questioner": "caption_only"}]
    assert run_benchmark(small_config(tmp_path, questioners=caption_only, target_seed=3), bootstrap=10, progress=False) == 0
    sample = json.loads((tmp_path / "out" / "results.json").read_text())["config"]["target_samples"]["exact"]
    world_targets = build_world("shapes_oracle", split="benchmark", corpus_size=2000, num_targets=100).targets
    # 40 of the world's 100 targets drawn without replacement by a seed-3 generator, kept in corpus order
    expected = [world_targets[i] for i in sorted(np.random.default_rng(3).choice(100, 40, replace=False))]
    assert sample["ids"] == expected and expected != world_targets[:40]
    assert sample["num_targets"] == 40 and sample["of"] == 100 and sample["seed"] == 3 and sample["sampled"]
    assert sample["sha256"] == hashlib.sha256("\n".join(expected).encode()).hexdigest()


def test_a_failing_questioner_does_not_lose_the_others(tmp_path):
    config = small_config(tmp_path)
    config["questioners"].insert(0, {"name": "broken", "questioner": "tests_helpers_missing:Nope"})
    assert run_benchmark(config, bootstrap=20, progress=False) == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["results"]) == {"exact/caption", "exact/template"}
    assert "exact/broken" in results["config"]["failures"]


class CountingQuestioner:
    """Asks one fixed question and keeps LLMQuestioner-style stats."""

    def __init__(self):
        self.stats = {"questions": 0, "fallbacks": 0, "backend_errors": 0, "last_error": ValueError("x")}

    def reset(self, captions, pools=None):
        pass

    def ask(self, observations):
        self.stats["questions"] += len(observations)
        self.stats["fallbacks"] += 1
        return ["is there a red circle?"] * len(observations)


def test_questioner_stats_are_kept_with_the_results(tmp_path, capsys):
    config = small_config(tmp_path)
    config["questioners"] = [{"name": "counting", "questioner": "test_benchmark_cli:CountingQuestioner"}]
    assert run_benchmark(config, bootstrap=10, progress=False) == 0
    stats = json.loads((tmp_path / "out" / "results.json").read_text())["results"]["exact/counting"]["questioner_stats"]
    # 40 targets in one batch, 4 rounds: one ask per round
    assert stats == {"questions": 160, "fallbacks": 4, "backend_errors": 0, "last_error": "x"}
    assert "[exact/counting] questioner stats: 4 fallback questions, 0 backend errors" in capsys.readouterr().out


def test_bad_benchmark_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^x.yaml: questioners: List should have at least 1 item"):
        run_benchmark({"worlds": [{"world": "shapes_oracle"}], "questioners": [], "_path": "x.yaml"})


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: chatir " + name in capsys.readouterr().out


def test_chatir_eval_command(tmp_path, capsys):
    code = main(["eval", "--world", "shapes_oracle", "--world-arg", "corpus_size=2000", "--world-arg", "num_targets=30",
                 "--questioner", "random", "--rounds", "3", "--out", str(tmp_path / "ev"), "--bootstrap", "20"])
    assert code == 0
    assert "shapes_oracle/random" in capsys.readouterr().out
    assert (tmp_path / "ev" / "results.json").exists()


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "chatir_env.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "benchmark" in out.stdout


def test_plot_has_a_panel_per_world_and_a_colour_per_questioner(tmp_path):
    import matplotlib.pyplot as plt

    from chatir_env.eval import report

    flat = {"rounds": 2, "hits@10": [10.0, 20.0, 30.0], "hits@10_ci95": [[5.0, 15.0, 25.0], [15.0, 25.0, 35.0]]}
    rows = {"learned/random": flat, "learned/ppo": flat, "exact/ppo": flat, "exact/random": flat, "solo": flat}
    panels = report.plot_panels(rows)
    assert list(panels) == ["learned", "exact", ""]
    assert [q for q, _ in panels["exact"]] == ["ppo", "random"]
    figures = []
    original = plt.subplots

    def spy(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    plt.subplots = spy
    try:
        report.plot_hits(rows, tmp_path / "p.png")
    finally:
        plt.subplots = original
    fig, axes = figures[0]
    assert axes.shape == (1, 3)
    colours = {}
    for ax in axes[0]:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert {k: len(v) for k, v in colours.items()} == {"random": 1, "ppo": 1, "solo": 1}
    assert colours["random"] != colours["ppo"]
    legend = fig.legends[0]  # a figure legend, outside every panel
    assert [t.get_text() for t in legend.get_texts()] == ["random", "ppo", "solo"]
    assert not any(ax.get_legend() for ax in axes[0])
