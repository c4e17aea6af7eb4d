"""`chatir answer` and `chatir index` with `--engine ray`: 2 CPU actors on tiny random models give exactly the
single-process results (needs the `ray` extra; skipped without it)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'chatir-env[ray]')")
pytest.importorskip("ray.data")
pytest.importorskip("transformers")

from chatir_env.answer_store import AnswerStore, read_fingerprint  # noqa: E402
from chatir_env.cli import main as cli_main  # noqa: E402
from chatir_env.index import ImageIndex  # noqa: E402

SHAPES = ["--world", "shapes_oracle", "--world-arg", "corpus_size=300", "--world-arg", "num_targets=3"]
RAY = ["--engine", "ray", "--workers", "2", "--worker-cpus", "0.5"]


@pytest.fixture(scope="module")
def local_ray():
    # Two CPUs as on the smallest machines: half-CPU actors leave room for Ray Data's read task.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()  # no raylet outlives the tests


def test_ray_answer_equals_single_process(tmp_path, local_ray, capsys):
    from chatir_env.answerers.blip2 import Blip2Answerer
    from chatir_env.testing import tiny_blip2

    model_dir = tmp_path / "blip2"
    Blip2Answerer(*tiny_blip2("t5", seed=4), lambda _: None, device="cpu").save_pretrained(model_dir)
    common = [*SHAPES, "--answerer-model", str(model_dir), "--answerer-arg", "device=cpu",
              "--answerer-arg", "max_new_tokens=3", "--batch-size", "8", "--limit", "40", "--no-progress"]
    local, distributed = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    assert cli_main(["answer", *common, "--store", str(local)]) == 0
    assert cli_main(["answer", *common, "--store", str(distributed), *RAY]) == 0
    assert "answered 40 of 363" in capsys.readouterr().out
    # Resuming on Ray: the first 40 are stored, the next 16 are answered.
    assert cli_main(["answer", *common[:-3], "--limit", "16", "--no-progress", "--store", str(distributed), *RAY]) == 0
    assert cli_main(["answer", *common[:-3], "--limit", "16", "--no-progress", "--store", str(local)]) == 0
    fingerprint = read_fingerprint(local)
    assert fingerprint.startswith("blip2-") and read_fingerprint(distributed) == fingerprint
    with AnswerStore(local, fingerprint, readonly=True) as a, AnswerStore(distributed, fingerprint, readonly=True) as b:
        assert len(a) == 56
        assert b.items() == a.items()


def test_ray_index_equals_single_process(tmp_path, local_ray):
    from chatir_env.retrievers.blip import BlipDialogRetriever
    from chatir_env.testing import bert_tokenizer, noise_images, tiny_blip

    BlipDialogRetriever(tiny_blip(seed=3), bert_tokenizer(), device="cpu").save_pretrained(tmp_path / "blip")
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(noise_images(23, seed=5)):
        image.save(images / f"im{i:03d}.png")
    (images / "broken.png").write_bytes(b"not an image")
    common = ["index", "--retriever", "blip", "--model", str(tmp_path / "blip"), "--device", "cpu", "--corpus", str(images),
              "--batch-size", "4", "--shard-size", "8", "--no-progress"]
    assert cli_main([*common, "--out", str(tmp_path / "local")]) == 0
    assert cli_main([*common, "--out", str(tmp_path / "ray"), *RAY]) == 0
    local, distributed = ImageIndex.load(tmp_path / "local"), ImageIndex.load(tmp_path / "ray")
    assert len(local) == 23 and distributed.ids == local.ids and distributed.fingerprint == local.fingerprint
    assert distributed.meta["retriever"] == local.meta["retriever"] == "BlipDialogRetriever"
    assert (distributed.embeddings - local.embeddings).abs().max().item() < 1e-6
    skipped = json.loads((tmp_path / "ray.skipped.json").read_text())["skipped"]
    assert [s["id"] for s in skipped] == ["broken.png"] and skipped[0]["reason"].startswith("corrupt")
