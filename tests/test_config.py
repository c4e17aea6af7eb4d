"""Typed configs: every packaged config loads; unknown keys, names and out-of-range values are one-line errors."""

import copy
from pathlib import Path

import gymnasium as gym
import pytest

import chatir_env  # noqa: F401  (registers the envs)
from chatir_env.cli import main as cli_main
from chatir_env.config import (
    ConfigError,
    UnknownArgumentError,
    UnknownNameError,
    apply_overrides,
    load_config,
    parse_key_values,
    schema_help,
    validate,
)
from chatir_env.eval.benchmark import BenchmarkConfig
from chatir_env.train.grpo import GRPOStageConfig, SFTStageConfig
from chatir_env.train.ppo import PPOConfig
from chatir_env.train.retriever import RetrieverTrainConfig
from chatir_env.train.train_retriever import ShapesRetrieverConfig
from chatir_env.train.visdial_retriever import VisDialRetrieverConfig

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = {
    "shapes_demo.yaml": BenchmarkConfig, "visdial_blip.yaml": BenchmarkConfig, "visdial_clip.yaml": BenchmarkConfig,
    "visdial_replay.yaml": BenchmarkConfig, "ppo_shapes.yaml": PPOConfig, "ppo_shapes_oracle.yaml": PPOConfig,
    "ppo_shapes_oracle_gain.yaml": PPOConfig,
    "retriever_shapes.yaml": ShapesRetrieverConfig, "retriever_visdial_blip.yaml": VisDialRetrieverConfig,
    "ppo_visdial_train.yaml": PPOConfig, "visdial_train_benchmark.yaml": BenchmarkConfig,
    "grpo_shapes.yaml": GRPOStageConfig, "grpo_visdial_train.yaml": GRPOStageConfig, "sft_shapes.yaml": SFTStageConfig,
    "sft_visdial_train.yaml": SFTStageConfig, "retriever_shapes_captions.yaml": ShapesRetrieverConfig,
    "grpo_shapes_10.yaml": GRPOStageConfig, "grpo_shapes_10_from_sft.yaml": GRPOStageConfig,
}


def test_every_packaged_config_validates():
    names = {p.name for p in (ROOT / "configs").glob("*.yaml")}
    assert names == set(SCHEMAS), "a new config needs its schema here"
    for name, schema in SCHEMAS.items():
        validate(schema, load_config(ROOT / "configs" / name))
    validate(BenchmarkConfig, load_config(ROOT / "examples" / "custom_benchmark.yaml"))


def test_shipped_values_survive_validation():
    cfg = validate(PPOConfig, load_config(ROOT / "configs" / "ppo_shapes.yaml"))
    assert (cfg.world, cfg.total_timesteps, cfg.learning_rate, cfg.eval_every) == ("shapes", 200000, 0.0003, 25000)
    assert cfg.net_arch == [256, 256]  # the default, not in the file
    retriever = validate(ShapesRetrieverConfig, load_config(ROOT / "configs" / "retriever_shapes.yaml"))
    assert (retriever.model.dim, retriever.data.num_scenes, retriever.train.steps) == (256, 200000, 6000)
    stage2 = validate(ShapesRetrieverConfig, load_config(ROOT / "configs" / "retriever_shapes_captions.yaml"))
    assert (stage2.init, stage2.data.caption_negatives, stage2.export) == (
        "runs/retriever_shapes/shapes_dual.safetensors", 0.5, "chatir_env/worlds/weights/shapes_dual")
    grpo = validate(GRPOStageConfig, load_config(ROOT / "configs" / "grpo_shapes.yaml"))
    assert (grpo.model.warm_start, grpo.env.max_rounds, grpo.grpo["learning_rate"], grpo.eval.curve_every) == (
        "configs/sft_shapes.yaml", 5, 0.0003, 50)
    assert grpo.env.max_question_chars == 300 and grpo.lora is None  # defaults, not in the file
    sft = validate(SFTStageConfig, load_config(ROOT / "configs" / "sft_visdial_train.yaml"))
    assert (sft.data.source, sft.data.world, sft.data.num_examples, sft.model.dtype) == (
        "visdial_train", "visdial_train_replay", 50000, "bfloat16")


def demo():
    config = load_config(ROOT / "configs" / "shapes_demo.yaml")
    config["_path"] = "configs/x.yaml"
    return config


def error_of(schema, config) -> str:
    with pytest.raises(ConfigError) as info:
        validate(schema, config)
    return str(info.value)


def test_an_unknown_top_level_key_is_named_with_the_allowed_ones():
    config = demo()
    config["bogus_key"] = 1
    assert error_of(BenchmarkConfig, config) == (
        "configs/x.yaml: bogus_key: unknown key; "
        "allowed: name, max_rounds, num_targets, target_seed, worlds, questioners, out_dir")


def test_nested_unknown_keys_are_named_with_their_path():
    config = demo()
    config["worlds"][1]["bogus"] = 2
    assert error_of(BenchmarkConfig, config) == "configs/x.yaml: worlds[1].bogus: unknown key; allowed: name, world, args"
    config = demo()
    config["worlds"][0]["args"] = {"corpus_sz": 3}
    message = error_of(BenchmarkConfig, config)
    assert message.startswith("configs/x.yaml: worlds[0].args: world 'shapes': unknown argument 'corpus_sz'; valid: split, ")
    assert message.endswith("; did you mean 'corpus_size'?")
    retriever = load_config(ROOT / "configs" / "retriever_shapes.yaml")
    retriever["model"]["dims"] = 128
    assert error_of(ShapesRetrieverConfig, retriever).endswith(
        "retriever_shapes.yaml: model.dims: unknown key; allowed: dim, image_size, cnn_width, text_width; did you mean 'dim'?")
    visdial = load_config(ROOT / "configs" / "retriever_visdial_blip.yaml")
    visdial["data"]["heldot"] = 5
    assert "data.heldot: unknown key; allowed: train_file," in error_of(VisDialRetrieverConfig, visdial)
    assert "did you mean 'heldout'?" in error_of(VisDialRetrieverConfig, visdial)
    ppo = {"world_kwargs": {"split": "train"}}  # the trainer sets the split itself
    assert "world_kwargs: world 'shapes_oracle': unknown argument 'split'" in error_of(PPOConfig, ppo)


def test_nested_unknown_keys_in_grpo_and_sft_configs_are_named():
    config = load_config(ROOT / "configs" / "grpo_shapes.yaml")
    config["env"]["max_round"] = 3
    assert error_of(GRPOStageConfig, config).endswith(
        "grpo_shapes.yaml: env.max_round: unknown key; allowed: world, world_kwargs, num_targets, max_rounds, reward, "
        "hit_bonus, invalid_question_penalty, repeat_penalty, unanswered_penalty, require_question_mark, "
        "max_question_tokens, max_question_chars, system_prompt; did you mean 'max_rounds'?")
    config = load_config(ROOT / "configs" / "grpo_shapes.yaml")
    config["eval"]["world_kwargs"]["corpus_sz"] = 10
    assert "grpo_shapes.yaml: eval.world_kwargs: world 'shapes_oracle': unknown argument 'corpus_sz'" in error_of(
        GRPOStageConfig, config)
    config = load_config(ROOT / "configs" / "grpo_shapes.yaml")
    config["grpo"]["lerning_rate"] = 0.1  # a trainer argument TRL does not have
    message = error_of(GRPOStageConfig, config)
    assert "grpo_shapes.yaml: grpo: unknown trl.GRPOConfig argument 'lerning_rate'; valid: " in message
    assert message.endswith("did you mean 'learning_rate'?")
    config = load_config(ROOT / "configs" / "sft_shapes.yaml")
    config["model"]["paht"] = "x"
    assert ("sft_shapes.yaml: model.paht: unknown key; allowed: path, build, config, warm_start, dtype; "
            "did you mean 'path'?") in error_of(SFTStageConfig, config)
    config = load_config(ROOT / "configs" / "sft_shapes.yaml")
    config["data"]["world_kwargs"] = {"train_file": "x.json"}  # a VisDial field under the Shapes source
    assert error_of(SFTStageConfig, config).endswith("sft_shapes.yaml: data: world_kwargs: not a field of source 'shapes'")


@pytest.mark.parametrize("schema, config, expected", [
    (GRPOStageConfig, {"model": {"build": "shapes_tiny"}, "env": {"max_rounds": 0}},
     "config: env.max_rounds: Input should be greater than or equal to 1 (got 0)"),
    (GRPOStageConfig, {"model": {"build": "shapes_tiny"}, "env": {"invalid_question_penalty": -1}},
     "config: env.invalid_question_penalty: Input should be greater than or equal to 0 (got -1)"),
    (GRPOStageConfig, {"model": {"build": "shapes_tiny"}, "eval": {"temperature": 0.0}},
     "config: eval.temperature: Input should be greater than 0 (got 0.0)"),
    (SFTStageConfig, {"model": {"build": "shapes_tiny"}, "data": {"corpus_size": 5}},
     "config: data.corpus_size: Input should be greater than or equal to 10 (got 5)"),
    (SFTStageConfig, {"model": {"dtype": "float8", "path": "m"}},
     "config: model.dtype: Input should be 'float32', 'bfloat16' or 'float16' (got 'float8')"),
    (PPOConfig, {"gamma": 1.5}, "config: gamma: Input should be less than or equal to 1 (got 1.5)"),
    (PPOConfig, {"net_arch": [64, 0]}, "config: net_arch[1]: Input should be greater than 0 (got 0)"),
    (PPOConfig, {"num_envs": 0}, "config: num_envs: Input should be greater than or equal to 1 (got 0)"),
    (PPOConfig, {"learning_rate": "fast"},
     "config: learning_rate: Input should be a valid number, unable to parse string as a number (got 'fast')"),
    (PPOConfig, {"select_by": "hits"}, "config: select_by: Input should be 'bri' or 'hits@10_round5' (got 'hits')"),
    (RetrieverTrainConfig, {"lr_decay": 1.5}, "config: lr_decay: Input should be less than or equal to 1 (got 1.5)"),
    (ShapesRetrieverConfig, {"data": {"caption_mask": -0.1}},
     "config: data.caption_mask: Input should be greater than or equal to 0 (got -0.1)"),
    (BenchmarkConfig, {"worlds": [{"world": "shapes"}], "questioners": [{"questioner": "random"}], "num_targets": 0},
     "config: num_targets: Input should be greater than or equal to 1 (got 0)"),
])
def test_out_of_range_values_are_named(schema, config, expected):
    assert error_of(schema, config) == expected


def test_unknown_names_in_configs_suggest_the_closest():
    config = demo()
    config["questioners"][1]["questioner"] = "randm"
    message = error_of(BenchmarkConfig, config)
    assert "questioners[1].questioner: unknown questioner 'randm'; valid: caption_only, random," in message
    assert error_of(BenchmarkConfig, config).endswith("did you mean 'random'?")
    assert error_of(PPOConfig, {"reward": "log_rank"}) == (
        "config: reward: unknown reward 'log_rank'; valid: rank_delta, log_rank_delta, best_log_rank_delta, "
        "log_rank_integral; "
        "did you mean 'log_rank_delta'?")
    assert error_of(PPOConfig, {"world": "shapez"}).startswith("config: world: unknown world 'shapez'; valid: shapes, ")
    config = demo()
    config["questioners"][4]["worlds"] = ["lerned"]
    expected = "questioners[4].worlds: unknown world label 'lerned'; valid: learned, exact; did you mean 'learned'?"
    assert expected in error_of(BenchmarkConfig, config)


def test_every_field_is_described():
    for schema in set(SCHEMAS.values()) | {RetrieverTrainConfig}:
        for line in schema_help(schema):
            assert not line.endswith(": "), f"{schema.__name__}: {line} has no description"
    assert "gamma (default 0.9): discount factor" in schema_help(PPOConfig)
    assert "train.steps (default 10000): " in "\n".join(schema_help(ShapesRetrieverConfig))


def test_key_value_parser_reads_yaml_scalars_and_names_bad_items():
    assert parse_key_values(["a=3", "b=0.5", "c=true", "d=null", "e=[1, 2]", "f=some text", "g=", "h=a=b"]) == {
        "a": 3, "b": 0.5, "c": True, "d": None, "e": [1, 2], "f": "some text", "g": "", "h": "a=b"}
    with pytest.raises(ConfigError, match=r"^--set 'gamma': must look like KEY=VALUE$"):
        parse_key_values(["gamma"])
    with pytest.raises(ConfigError, match=r"^--world-arg '=3': must look like KEY=VALUE$"):
        parse_key_values(["=3"], option="--world-arg")
    with pytest.raises(ConfigError, match=r"^--set 'x=\[1,': the value is not valid YAML"):
        parse_key_values(["x=[1,"])


def test_overrides_reach_into_sections_and_take_the_blame():
    config = apply_overrides({"_path": "ppo.yaml", "world_kwargs": {"answer_noise": 0.0}},
                             {"world_kwargs.corpus_size": 2000, "gamma": 0.5})
    assert config["world_kwargs"] == {"answer_noise": 0.0, "corpus_size": 2000} and config["gamma"] == 0.5
    assert validate(PPOConfig, config).world_kwargs["corpus_size"] == 2000
    bad = apply_overrides({"_path": "ppo.yaml", "gamma": 0.9}, {"gamma": 2})
    assert error_of(PPOConfig, bad) == "--set gamma=2: gamma: Input should be less than or equal to 1 (got 2)"
    bad = apply_overrides({"_path": "ppo.yaml"}, {"world_kwargs.corpus_sz": 3})
    assert error_of(PPOConfig, bad).startswith("--set world_kwargs.corpus_sz=3: world_kwargs: world 'shapes_oracle': "
                                               "unknown argument 'corpus_sz'")
    with pytest.raises(ConfigError, match="gamma is not a section"):
        apply_overrides({"gamma": 0.9}, {"gamma.x": 1})


def test_gym_make_names_valid_world_arguments():
    with pytest.raises(TypeError) as info:
        gym.make("ChatIR/ShapesOracle-v0", corpus_sz=3)
    assert isinstance(info.value, UnknownArgumentError)
    assert "world 'shapes_oracle': unknown argument 'corpus_sz'; valid: split, retriever, corpus_size," in str(info.value)
    assert "did you mean 'corpus_size'?" in str(info.value)
    with pytest.raises(ValueError, match=r"^unknown reward 'log_rank'; valid: rank_delta, log_rank_delta, "
                                         r"best_log_rank_delta, log_rank_integral; did you mean 'log_rank_delta'\?$"):
        gym.make("ChatIR/ShapesOracle-v0", reward="log_rank", corpus_size=500, num_targets=10)
    with pytest.raises(KeyError) as info:
        chatir_env.worlds.build_world("shapes_orcle")
    assert str(info.value) == ("unknown world 'shapes_orcle'; valid: shapes, shapes_oracle, visdial, visdial_replay, "
                               "visdial_train, visdial_train_replay; "
                               "did you mean 'shapes_oracle'?")


def test_make_questioner_names_short_names_and_arguments():
    from chatir_env.agents import make_questioner

    with pytest.raises(UnknownNameError, match=r"unknown questioner 'randm'; valid: caption_only, .* did you mean 'random'\?"):
        make_questioner("randm")
    with pytest.raises(UnknownArgumentError, match=r"^questioner 'random': unknown argument 'sed'; valid: seed; did you mean"):
        make_questioner("random", sed=1)


@pytest.mark.parametrize("argv, expected", [
    (["eval", "--questioner", "randm"], "chatir eval: --questioner: questioners[0].questioner: unknown questioner 'randm'"),
    (["eval", "--world", "shapes_oracle", "--world-arg", "corpus_sz=3"],
     "chatir eval: --world-arg: worlds[0].args: world 'shapes_oracle': unknown argument 'corpus_sz'"),
    (["eval", "--world-arg", "corpus_size"], "chatir eval: --world-arg 'corpus_size': must look like KEY=VALUE"),
    (["eval", "--questioner", "random", "--questioner-arg", "sed=1", "--world", "shapes_oracle",
      "--world-arg", "corpus_size=500"],
     "questioner 'random': unknown argument 'sed'; valid: seed; did you mean 'seed'?"),
    (["train", "ppo", "--config", "ppo_shapes", "--set", "bogus=1"],
     "chatir train: --set bogus=1: bogus: unknown key; allowed: world, "),
    (["benchmark", "--config", "shapes_demo", "--num-targets", "0"],
     "chatir benchmark: --num-targets 0: num_targets: Input should be greater than or equal to 1 (got 0)"),
    (["train", "grpo", "--config", "grpo_shapes", "--set", "env.max_rounds=0"],
     "chatir train: --set env.max_rounds=0: env.max_rounds: Input should be greater than or equal to 1 (got 0)"),
    (["train", "ppo"], "chatir train: --config is required"),
    (["train", "retriever", "--config", "retriever_shapes", "--set", "train.stepz=1"],
     "chatir train: --set train.stepz=1: train.stepz: unknown key; allowed: steps,"),
])
def test_cli_typos_are_one_line_errors_without_traceback(argv, expected, capsys, tmp_path):
    code = cli_main(argv + (["--out", str(tmp_path / "out")] if argv[0] == "eval" else []) +
                    (["--out-dir", str(tmp_path / "out")] if argv[0] == "benchmark" else []))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if "sed=1" in argv:  # a questioner's own arguments are checked when it is built: its row fails, the run goes on
        assert code == 1 and expected in captured.out
        return
    assert code == 2
    assert captured.err.startswith(expected) and captured.err.count("\n") == 1, captured.err


def test_questioner_args_go_to_the_questioner_before_them(tmp_path, capsys):
    import json

    code = cli_main(["eval", "--world", "shapes_oracle", "--world-arg", "corpus_size=2000", "--world-arg", "num_targets=20",
                     "--questioner", "random", "--questioner-arg", "seed=1",
                     "--questioner", "random", "--questioner-arg", "seed=2",
                     "--questioner", "caption_only", "--rounds", "2", "--out", str(tmp_path / "ev"), "--bootstrap", "10"])
    assert code == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert set(results["results"]) == {"shapes_oracle/random(seed=1)", "shapes_oracle/random(seed=2)",
                                       "shapes_oracle/caption_only"}
    args = {q["name"]: q["args"] for q in results["config"]["questioners"]}
    assert args == {"random(seed=1)": {"seed": 1}, "random(seed=2)": {"seed": 2}, "caption_only": {}}
    # different seeds ask different questions, so (almost surely) the ranks differ somewhere
    first, second = (results["results"][f"shapes_oracle/random(seed={s})"] for s in (1, 2))
    assert first["mean_rank"] != second["mean_rank"]
    with pytest.raises(SystemExit):
        cli_main(["eval", "--questioner-arg", "seed=1"])
    assert "give the --questioner it belongs to first" in capsys.readouterr().err


def test_duplicate_run_labels_are_refused():
    config = demo()
    config["questioners"][1]["name"] = "caption-only"
    assert "questioners: two runs in world 'learned' share a label" in error_of(BenchmarkConfig, config)
    config = copy.deepcopy(demo())
    config["worlds"][1]["name"] = "learned"
    assert "worlds: two worlds share a label" in error_of(BenchmarkConfig, config)


def test_train_fields_lists_every_field_with_its_meaning(capsys):
    assert cli_main(["train", "ppo", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "  gamma (default 0.9): discount factor\n" in out
    assert out.count("(default ") == len(PPOConfig.model_fields)
    assert cli_main(["train", "retriever", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "world: shapes:\n" in out and "world: visdial:\n" in out and "  data.heldout (default 2000): " in out
    assert cli_main(["train", "grpo", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "stage: grpo:\n" in out and "stage: sft:\n" in out
    assert "  env.max_rounds (default 5): questions per episode\n" in out and "  data.source (default 'shapes'): " in out
    assert cli_main(["benchmark", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "worlds[].world (required): a registered world" in out and "questioners[].args (default {}): " in out


def test_trainers_get_the_overridden_config_and_the_command(monkeypatch):
    import chatir_env.train.grpo as grpo
    import chatir_env.train.ppo as ppo

    seen = {}
    monkeypatch.setattr(ppo, "main", lambda config, out_dir, steps: seen.update(ppo=(config, out_dir, steps)))
    monkeypatch.setattr(grpo, "main", lambda config, out_dir, steps: seen.update(grpo=(config, out_dir, steps)))
    assert cli_main(["train", "ppo", "--config", "ppo_shapes", "--set", "gamma=0.5", "--set", "world_kwargs.answer_noise=0.1",
                     "--steps", "100", "--out-dir", "runs/x y"]) == 0
    config, out_dir, steps = seen["ppo"]
    assert (config["gamma"], config["world_kwargs"], out_dir, steps) == (0.5, {"answer_noise": 0.1}, "runs/x y", 100)
    assert config["_command"] == ("chatir train ppo --config ppo_shapes --set gamma=0.5 --set world_kwargs.answer_noise=0.1 "
                                  "--steps 100 --out-dir 'runs/x y'")
    assert cli_main(["train", "grpo", "--config", "grpo_shapes", "--set", "threads=2"]) == 0
    config = seen["grpo"][0]
    assert config["threads"] == 2 and sorted(k for k in config if k.startswith("_")) == ["_command", "_overrides", "_path"]
    assert config["_command"] == "chatir train grpo --config grpo_shapes --set threads=2"
