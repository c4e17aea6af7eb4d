"""The wheel installs agents/, train/, eval/ and configs/ under chatir_env, never as top-level modules."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)],
                   check=True, capture_output=True)
    return next(out.glob("chatir_env-*.whl"))


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("chatir_env-")}
    assert tops == {"chatir_env"}, f"unexpected top-level entries: {tops - {'chatir_env'}}"
    for expected in ("chatir_env/agents/base.py", "chatir_env/train/ppo.py", "chatir_env/eval/benchmark.py",
                     "chatir_env/configs/shapes_demo.yaml", "chatir_env/worlds/shapes.py"):
        assert expected in names
    if (ROOT / "chatir_env/worlds/weights/shapes_dual.safetensors").exists():
        assert "chatir_env/worlds/weights/shapes_dual.safetensors" in names


def test_installed_wheel_imports_and_runs_from_elsewhere(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = (
        "import chatir_env, chatir_env.agents, chatir_env.train.ppo, chatir_env.eval.benchmark, gymnasium as gym;"
        "assert chatir_env.__file__.startswith(%r), chatir_env.__file__;"
        "import importlib.util as u; assert u.find_spec('eval') is None and u.find_spec('train') is None;"
        "from chatir_env.config import load_config; assert load_config('shapes_demo')['name'] == 'shapes_demo';"
        "env = gym.make('ChatIR/ShapesOracle-v0', corpus_size=500, num_targets=20); env.reset(seed=0); print('ok')"
    ) % str(target)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr
