"""PPO run bookkeeping across an interruption and two resumes: segments, cumulative time, full commands."""

import json
import shlex

import yaml

import chatir_env.train.ppo as ppo
from chatir_env.cli import main as cli_main
from chatir_env.sb3_vec_env import PooledVecEnv


class FakeTime:
    """A wall clock that advances 30 s each time it is read, so elapsed minutes are large and known to grow."""

    def __init__(self):
        self.now = 1_000_000.0

    def time(self):
        self.now += 30.0
        return self.now


def test_segments_cumulative_minutes_and_commands(tmp_path, monkeypatch, capsys):
    config = tmp_path / "ppo_tiny.yaml"
    config.write_text(yaml.safe_dump({"world": "shapes_oracle", "world_kwargs": {"corpus_size": 2000}, "num_envs": 8,
                                      "n_steps": 10, "batch_size": 40, "n_epochs": 1, "eval_every": 80,
                                      "eval_targets": 20, "net_arch": [16]}))
    out = tmp_path / "run"
    monkeypatch.setattr(ppo, "time", FakeTime())

    def train(steps):
        argv = ["train", "ppo", "--config", str(config), "--set", "top_k=20", "--set", "hit_bonus=0.5",
                "--steps", str(steps), "--out-dir", str(out)]
        return cli_main(argv), "chatir " + shlex.join(argv)

    # segment 1: 0 -> 160 steps (8 envs x 20 env steps), validated at 80 and 160
    code, command1 = train(160)
    assert code == 0
    # segment 2: interrupted after 10 more env steps (160 -> 240), validated at 240 on the way
    calls = {"n": 0}
    original = PooledVecEnv.step_wait

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(PooledVecEnv, "step_wait", interrupting)
    code, command2 = train(400)
    assert code == 130
    last = json.loads((out / "last.json").read_text())
    assert (last["segment"], last["timesteps"], last["command"]) == (2, 240, command2)
    best = json.loads((out / "best.json").read_text())  # the exported policy's record matches its checkpoint's
    assert json.loads((out / "best_policy.json").read_text())["command"] == best["command"]
    # segment 3: resumes at 240 and runs to 400
    monkeypatch.setattr(PooledVecEnv, "step_wait", original)
    code, command3 = train(400)
    assert code == 0
    assert "--set top_k=20 --set hit_bonus=0.5 --steps 400 --out-dir" in command3

    history = json.loads((out / "validation.json").read_text())
    assert [(h["segment"], h["timesteps"]) for h in history] == [(1, 80), (1, 160), (2, 240), (3, 320), (3, 400)]
    minutes = [h["minutes"] for h in history]
    assert minutes == sorted(minutes) and len(set(minutes)) == len(minutes), minutes  # never restarts at a resume
    assert minutes[3] > minutes[2] > minutes[1] > minutes[0] > 0

    final = json.loads((out / "final.json").read_text())
    assert (final["segment"], final["timesteps"], final["command"]) == (3, 400, command3)
    assert final["wall_seconds"] / 60 >= minutes[-1]
    best = json.loads((out / "best.json").read_text())
    assert best["command"] in (command1, command2, command3) and best["validation"]["best"] is True
    assert best["timesteps"] == best["validation"]["timesteps"]
    assert json.loads((out / "last.json").read_text())["command"] == command3
    policy = json.loads((out / "best_policy.json").read_text())
    assert policy["command"] == best["command"] and policy["validation"] == history
    segments = [{"segment": 1, "command": command1}, {"segment": 2, "command": command2}, {"segment": 3, "command": command3}]
    assert policy["segments"] == final["segments"] == segments
    assert policy["config"]["top_k"] == 20 and policy["config"]["hit_bonus"] == 0.5
