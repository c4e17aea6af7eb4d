"""Building an index from image files (resume, locking, bad images) and the eval-dialogs command."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from chatir_env.cli import main as cli_main
from chatir_env.data.images import ImageCorpus
from chatir_env.data.index_cli import IndexLockedError, build_index, index_paths, load_retriever
from chatir_env.dialog import Dialog
from chatir_env.eval.eval_dialogs import evaluate_dialog_file
from chatir_env.index import ImageIndex, IndexMismatchError

N_GOOD = 30


class TinyImageRetriever(torch.nn.Module):
    """A deterministic stand-in for BLIP: 8x8 thumbnail -> linear -> unit vector; words -> hashed bag."""

    def __init__(self, seed: int = 0, dim: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Parameter(torch.randn(8 * 8 * 3, dim, generator=g), requires_grad=False)
        self.words = torch.nn.Parameter(torch.randn(97, dim, generator=g), requires_grad=False)
        self.dim = dim
        self.device = torch.device("cpu")
        self.fingerprint = f"tiny-{seed}-{dim}"
        self.images_encoded = 0

    def encode_images(self, items) -> torch.Tensor:
        self.images_encoded += len(items)
        pixels = torch.stack([
            torch.frombuffer(bytearray(im.resize((8, 8), Image.BILINEAR).tobytes()), dtype=torch.uint8).float() / 255
            for im in items
        ])
        return torch.nn.functional.normalize(pixels @ self.proj, dim=1)

    def encode_dialogs(self, dialogs) -> torch.Tensor:
        rows = []
        for d in dialogs:
            ids = [zlib.crc32(w.encode()) % 97 for w in d.text().replace(",", " ").split()]
            rows.append(self.words[ids].sum(0))
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


class CrashingRetriever(TinyImageRetriever):
    """Dies (as if interrupted) when asked for its ``crash_after``-th batch."""

    def __init__(self, crash_after: int, **kwargs):
        super().__init__(**kwargs)
        self.crash_after = crash_after
        self.batches = 0

    def encode_images(self, items):
        self.batches += 1
        if self.batches == self.crash_after:
            raise KeyboardInterrupt
        return super().encode_images(items)


@pytest.fixture()
def image_dir(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    for i in range(N_GOOD):
        colour = tuple(int(v) for v in torch.randint(0, 256, (3,), generator=g))
        im = Image.new("RGB", (24 + i % 5, 20), colour)
        im.putpixel((i % 20, 3), (255 - colour[0], 0, 0))
        folder = root / "sub" if i % 3 == 0 else root
        im.save(folder / f"img{i:03d}.png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    Image.new("L", (1200, 1000)).save(root / "huge.png")  # over the max_pixels used below
    (root / "notes.txt").write_text("not an image")
    return root


def _good_ids(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("img*.png"))


def _corpus(root: Path, **kwargs) -> ImageCorpus:
    return ImageCorpus.from_folder(root, max_pixels=1_000_000, **kwargs)


def test_build_index_skips_and_reports_bad_images(image_dir, tmp_path):
    retriever = TinyImageRetriever()
    out = tmp_path / "idx" / "tiny"
    index = build_index(retriever, _corpus(image_dir), out, batch_size=4, shard_size=8, progress=False)
    good = _good_ids(image_dir)
    assert index.ids == good and len(index) == N_GOOD
    direct = retriever.encode_images([Image.open(image_dir / i).convert("RGB") for i in good])
    assert torch.allclose(index.embeddings, direct)
    paths = index_paths(out)
    assert not paths["shards"].exists()  # checkpoints are cleaned up after the final atomic write
    report = json.loads(paths["skipped"].read_text())
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"empty.jpg", "corrupt.jpg", "huge.png"}
    assert reasons["empty.jpg"].startswith("empty") and reasons["corrupt.jpg"].startswith("corrupt")
    assert reasons["huge.png"].startswith("too large")
    loaded = ImageIndex.load(out, fingerprint=retriever.fingerprint)
    assert loaded.ids == good and torch.equal(loaded.embeddings, index.embeddings)
    with pytest.raises(IndexMismatchError, match="tiny-0-16"):
        ImageIndex.load(out, fingerprint=TinyImageRetriever(seed=1).fingerprint)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_index(retriever, _corpus(image_dir), out, progress=False)


def test_search_space_corpus_reports_missing_files(image_dir, tmp_path):
    listed = ["img001.png", "gone/missing.jpg", "sub/img000.png", "empty.jpg"]
    space = tmp_path / "space.json"
    space.write_text(json.dumps(listed))
    corpus = ImageCorpus.from_search_space(image_dir, space)
    index = build_index(TinyImageRetriever(), corpus, tmp_path / "ss", batch_size=2, progress=False)
    assert index.ids == ["img001.png", "sub/img000.png"]  # search-space order, bad ones left out
    skipped = dict(corpus.skipped)
    assert skipped["gone/missing.jpg"].startswith("missing") and skipped["empty.jpg"].startswith("empty")


def test_interrupted_indexing_resumes_without_loss_or_duplicates(image_dir, tmp_path):
    reference = build_index(TinyImageRetriever(), _corpus(image_dir), tmp_path / "ref", batch_size=4, progress=False)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_index(CrashingRetriever(crash_after=5), _corpus(image_dir), out, batch_size=4, shard_size=8, progress=False)
    paths = index_paths(out)
    shards = sorted(paths["shards"].glob("shard-*.safetensors"))
    assert len(shards) == 2  # 4 batches of 4 made it: two complete shards of 8
    assert not paths["tensor"].exists()
    assert not [p.name for p in paths["shards"].iterdir() if ".tmp" in p.name]  # no temp file of the atomic writer left

    retriever = TinyImageRetriever()
    index = build_index(retriever, _corpus(image_dir), out, batch_size=4, shard_size=8, progress=False)
    assert retriever.images_encoded == N_GOOD - 16  # only what the shards did not hold
    assert index.ids == reference.ids and len(set(index.ids)) == N_GOOD
    assert torch.allclose(index.embeddings, reference.embeddings)


def test_resume_refuses_shards_from_another_model(image_dir, tmp_path):
    out = tmp_path / "mixed"
    with pytest.raises(KeyboardInterrupt):
        build_index(CrashingRetriever(crash_after=4, seed=0), _corpus(image_dir), out, batch_size=4, shard_size=4,
                    progress=False)
    other = TinyImageRetriever(seed=7)
    with pytest.raises(IndexMismatchError) as err:
        build_index(other, _corpus(image_dir), out, batch_size=4, shard_size=4, progress=False)
    assert "shard-000000.safetensors" in str(err.value) and "tiny-0-16" in str(err.value) and "--restart" in str(err.value)
    index = build_index(other, _corpus(image_dir), out, batch_size=4, restart=True, progress=False)
    assert index.fingerprint == other.fingerprint and other.images_encoded == N_GOOD


def test_corpus_changed_between_runs_is_refused(image_dir, tmp_path):
    out = tmp_path / "changed"
    with pytest.raises(KeyboardInterrupt):
        build_index(CrashingRetriever(crash_after=3), _corpus(image_dir), out, batch_size=4, shard_size=4, progress=False)
    first = _good_ids(image_dir)[0]
    (image_dir / first).unlink()  # a file already encoded disappears, so the shards no longer fit
    with pytest.raises(ValueError, match="no longer lists"):
        build_index(TinyImageRetriever(), _corpus(image_dir), out, batch_size=4, progress=False)


def test_second_writer_is_locked_out(image_dir, tmp_path):
    out = tmp_path / "locked"
    lock_path = index_paths(out)["lock"]
    out.parent.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(60)",
         str(lock_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError, match="another process is writing .*locked.safetensors"):
            build_index(TinyImageRetriever(), _corpus(image_dir), out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert len(build_index(TinyImageRetriever(), _corpus(image_dir), out, progress=False)) == N_GOOD


def test_build_index_from_plain_pairs(tmp_path):
    images = [(f"p{i}", Image.new("RGB", (8, 8), (i * 20, 0, 0))) for i in range(10)]
    index = build_index(TinyImageRetriever(), images, tmp_path / "pairs", batch_size=3, progress=False)
    assert index.ids == [f"p{i}" for i in range(10)]
    with pytest.raises(ValueError, match="more than once"):
        build_index(TinyImageRetriever(), images + images[:1], tmp_path / "dup", batch_size=3, progress=False)


def test_load_retriever_specs():
    r = load_retriever("test_index_build:TinyImageRetriever", seed=3)
    assert r.fingerprint == "tiny-3-16"
    with pytest.raises(ValueError, match="neither a known name"):
        load_retriever("nonsense")
    with pytest.raises(ValueError, match="has no attribute"):
        load_retriever("test_index_build:Nope")


def test_index_and_eval_dialogs_commands(image_dir, tmp_path, capsys):
    out = tmp_path / "cli" / "tiny"
    args = ["--retriever", "test_index_build:TinyImageRetriever"]
    assert cli_main(["index", *args, "--corpus", str(image_dir), "--out", str(out), "--batch-size", "5",
                     "--max-pixels", "1000000", "--no-progress"]) == 0
    assert "indexed 30 images (3 skipped" in capsys.readouterr().out
    assert cli_main(["index", *args, "--corpus", str(image_dir), "--out", str(out), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err

    ids = _good_ids(image_dir)
    entries = [{"img": ids[i], "dialog": ["a small picture"] + [f"is it number {i + j}? maybe {j}" for j in range(10)]}
               for i in range(0, N_GOOD, 2)]
    dialog_file = tmp_path / "mine.json"
    dialog_file.write_text(json.dumps(entries))
    results = tmp_path / "results"
    assert cli_main(["eval-dialogs", *args, "--index", str(out), "--dialogs", str(dialog_file), "--out", str(results),
                     "--bootstrap", "50", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "Hits@10" in table and "mine.json" in table
    payload = json.loads((results / "mine.json").read_text())
    ranks = torch.tensor(payload["ranks"])
    assert ranks.shape == (11, len(entries))
    # The ranks, recomputed here without the package's ranking: a stable descending sort of the scores
    # (ChatIR eval.py's argsort), the target's position in it.
    index = ImageIndex.load(out)
    retriever = TinyImageRetriever()
    positions = [index.ids.index(e["img"]) for e in entries]
    expected_ranks = []
    for t in range(11):
        dialogs = [Dialog(e["dialog"][0], tuple((s.rsplit("? ", 1)[0] + "?", s.rsplit("? ", 1)[1])
                                                for s in e["dialog"][1 : t + 1]))
                   for e in entries]
        order = torch.argsort(retriever.encode_dialogs(dialogs) @ index.embeddings.T, dim=1, descending=True, stable=True)
        expected_ranks.append([int((order[q] == p).nonzero()) for q, p in enumerate(positions)])
        assert ranks[t].tolist() == expected_ranks[t], t
    csv_lines = (results / "mine.csv").read_text().splitlines()
    assert csv_lines[0].startswith("file,round,hits@10,ci95_low,ci95_high") and len(csv_lines) == 12
    assert len((results / "summary.csv").read_text().splitlines()) == 12
    # Cumulative Hits@10: a target counts from the first round it ranked in the top 10.
    first_hit = [next((t for t in range(11) if expected_ranks[t][q] < 10), 11) for q in range(len(entries))]
    expected_hits = [100 * sum(f <= t for f in first_hit) / len(entries) for t in range(11)]
    assert payload["summary"]["hits@10"] == pytest.approx(expected_hits)

    # A target the index does not hold (e.g. a skipped image): the error names file and entry.
    entries.append({"img": "corrupt.jpg", "dialog": ["a caption", "is it? no"]})
    dialog_file.write_text(json.dumps(entries))
    assert cli_main(["eval-dialogs", *args, "--index", str(out), "--dialogs", str(dialog_file), "--out", str(results)]) == 1
    err = capsys.readouterr().err
    assert f"{dialog_file}, entry {len(entries) - 1}: target 'corrupt.jpg' is not in the corpus" in err
    # An index built by another model is refused.
    assert cli_main(["eval-dialogs", "--retriever", "test_index_build:TinyImageRetriever", "--retriever-arg", "seed=5",
                     "--index", str(out), "--dialogs", str(dialog_file), "--out", str(results)]) == 1
    assert "was built by model 'tiny-0-16'" in capsys.readouterr().err


def test_evaluate_dialog_file_refuses_foreign_index():
    index = ImageIndex(torch.eye(3), ["a", "b", "c"], "someone-else")
    with pytest.raises(IndexMismatchError):
        evaluate_dialog_file(TinyImageRetriever(), index, [("a", Dialog("x"))])


def test_evaluate_dialog_file_names_the_dialog_whose_embedding_is_nan():
    class NaNOnSecondTurn(TinyImageRetriever):
        def encode_dialogs(self, dialogs):
            out = torch.nn.functional.normalize(torch.ones(len(dialogs), self.dim), dim=1)
            out[[d.round == 2 and d.caption == "two" for d in dialogs]] = float("nan")
            return out

    index = ImageIndex(torch.eye(16)[:3], ["a", "b", "c"], "tiny-0-16")
    turns = (("q1", "a1"), ("q2", "a2"))
    dialogs = [("a", Dialog("one", turns)), ("c", Dialog("two", turns))]
    with pytest.raises(ValueError, match="NaN or inf for the dialog of target 'c' at round 2"):
        evaluate_dialog_file(NaNOnSecondTurn(), index, dialogs, rounds=2)
    ranks = evaluate_dialog_file(NaNOnSecondTurn(), index, dialogs, rounds=1)
    assert ranks.shape == (2, 2)  # every dialog at rounds 0 and 1, ranked against the 3 images
    assert ranks.tolist() == [[0, 2], [0, 2]]  # all-equal scores: the stable order is the corpus order
