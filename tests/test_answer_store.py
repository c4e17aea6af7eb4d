"""The answer store (chatir_env.answer_store), answerer fingerprints, `chatir answer` and its resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chatir_env.answer_store import (
    CHATIR_RELEASE_FINGERPRINT,
    VISDIAL_HUMAN_FINGERPRINT,
    AnswerStore,
    AnswerStoreError,
    AnswerStoreMismatchError,
    StoreAnswerer,
    import_dialog_files,
    normalize_question,
    read_fingerprint,
)
from chatir_env.cli import main as cli_main
from chatir_env.dialog import Dialog

REPO = Path(__file__).resolve().parents[1]
SHAPES = ["--world", "shapes_oracle", "--world-arg", "corpus_size=300", "--world-arg", "num_targets=3"]


# --------------------------------------------------------------------------- the store
def test_normalize_question():
    assert normalize_question("  Is it   SUNNY?\n") == "is it sunny?"
    assert normalize_question("is\tthere a\n\ndog ?") == "is there a dog ?"
    assert normalize_question("is it sunny") != normalize_question("is it sunny?")  # punctuation is kept


def test_put_get_first_answer_wins_and_persists(tmp_path):
    path = tmp_path / "sub" / "a.sqlite"
    with AnswerStore(path, "fp-a") as store:
        added = store.put_many([("img1", "Is it sunny?", "yes"), ("img1", "is it  sunny?", "no"),
                                ("img2", "is it sunny?", "no")])
        assert added == 2  # the second row repeats the first row's key
        assert store.put_many([("img2", "IS IT SUNNY?", "maybe"), ("img2", "how many dogs?", "two")]) == 1
        assert len(store) == 3
        keys = [("img1", "is it sunny?"), ("img2", " Is it sunny? "), ("img3", "is it sunny?"), ("img2", "how many dogs?")]
        assert store.get_many(keys) == ["yes", "no", None, "two"]
    assert read_fingerprint(path) == "fp-a"
    with AnswerStore(path, "fp-a", readonly=True) as store:
        assert len(store) == 3
        assert store.items() == [("img1", "is it sunny?", "yes"), ("img2", "how many dogs?", "two"),
                                 ("img2", "is it sunny?", "no")]


def test_get_many_spans_query_chunks(tmp_path):
    with AnswerStore(tmp_path / "a.sqlite", "fp") as store:
        store.put_many([(f"img{i}", "q?", str(i)) for i in range(0, 1000, 2)])  # even images only
        found = store.get_many([(f"img{i}", "q?") for i in range(1000)])
    assert found == [str(i) if i % 2 == 0 else None for i in range(1000)]


def test_another_fingerprint_is_refused_naming_both(tmp_path):
    path = tmp_path / "a.sqlite"
    AnswerStore(path, "blip2-aaaa").close()
    with pytest.raises(AnswerStoreMismatchError) as caught:
        AnswerStore(path, "blip2-bbbb")
    err = caught.value
    assert err.reason == "fingerprint_mismatch" and (err.stored, err.requested) == ("blip2-aaaa", "blip2-bbbb")
    assert "blip2-aaaa" in str(err) and "blip2-bbbb" in str(err) and str(path) in str(err)
    with pytest.raises(AnswerStoreMismatchError):
        AnswerStore(path, "blip2-bbbb", readonly=True)


def test_unusable_stores_have_reasons(tmp_path):
    with pytest.raises(AnswerStoreError) as caught:
        AnswerStore(tmp_path / "absent.sqlite", "fp", readonly=True)
    assert caught.value.reason == "missing" and "chatir answer" in str(caught.value)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AnswerStoreError) as caught:
        AnswerStore(junk, "fp")
    assert caught.value.reason == "not_a_store" and str(junk) in str(caught.value)
    with AnswerStore(tmp_path / "a.sqlite", "fp") as store:
        with pytest.raises(AnswerStoreError) as caught:
            store.put_many([("img", "q?", "yes"), ("img", "r?", None)])
        assert caught.value.reason == "bad_row" and "row 1" in str(caught.value)
        assert len(store) == 0  # nothing of the bad batch was written
    with AnswerStore(tmp_path / "a.sqlite", "fp", readonly=True) as store:
        with pytest.raises(AnswerStoreError) as caught:
            store.put_many([("img", "q?", "yes")])
        assert caught.value.reason == "readonly"


def test_reader_sees_commits_while_the_writer_is_open(tmp_path):
    path = tmp_path / "a.sqlite"
    writer = AnswerStore(path, "fp")
    writer.put_many([("img", "q1?", "a")])
    reader = AnswerStore(path, "fp", readonly=True)
    assert reader.get_many([("img", "q1?"), ("img", "q2?")]) == ["a", None]
    writer.put_many([("img", "q2?", "b")])
    assert reader.get_many([("img", "q2?")]) == ["b"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader.close()
    writer.close()


def test_a_process_killed_inside_a_batch_leaves_only_committed_batches(tmp_path):
    path = tmp_path / "a.sqlite"
    script = textwrap.dedent(f"""
        import os, signal
        from chatir_env.answer_store import AnswerStore
        store = AnswerStore({str(path)!r}, "fp")
        store.put_many([("img", f"committed {{i}}?", "yes") for i in range(50)])
        connection = store.connection
        connection.execute("BEGIN IMMEDIATE")  # what put_many does, stopped half-way
        connection.executemany("INSERT INTO answers VALUES (?, ?, ?)", [("img", f"partial {{i}}?", "no") for i in range(50)])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    with AnswerStore(path, "fp") as store:
        assert len(store) == 50
        assert {q for _, q, _ in store.items()} == {f"committed {i}?" for i in range(50)}


# --------------------------------------------------------------------------- StoreAnswerer
class CountingAnswerer:
    """Answers "<question> about <target>" and records every call."""

    def __init__(self, fingerprint: str | None = "fp"):
        self.fingerprint = fingerprint
        self.calls: list[list[tuple[str, str]]] = []

    def answer(self, targets, dialogs, questions):
        self.calls.append(list(zip(targets, questions)))
        return [f"{q} about {t}" for t, q in zip(targets, questions)]


def test_store_answerer_hits_and_one_batched_write_through(tmp_path):
    store = AnswerStore(tmp_path / "a.sqlite", "fp")
    store.put_many([("img1", "is it sunny?", "no")])
    inner = CountingAnswerer()
    answerer = StoreAnswerer(store, inner)
    dialogs = [Dialog("c")] * 4
    questions = ["Is it sunny?", "how many?", "how many?", "How  many?"]
    answers = answerer.answer(["img1", "img1", "img2", "img2"], dialogs, questions)
    assert answers == ["no", "how many? about img1", "how many? about img2", "how many? about img2"]
    assert inner.calls == [[("img1", "how many?"), ("img2", "how many?")]]  # one call, each missing key once
    assert answerer.stats == {"hits": 1, "misses": 2, "fallbacks": 0}
    assert len(store) == 3
    assert answerer.answer(["img2"], [Dialog("c")], ["how many?"]) == ["how many? about img2"]
    assert len(inner.calls) == 1  # answered from the store this time


def test_store_answerer_without_inner(tmp_path):
    store = AnswerStore(tmp_path / "a.sqlite", "fp")
    store.put_many([("img1", "q?", "yes")])
    answerer = StoreAnswerer(store, fallback="i don't know")
    assert answerer.answer(["img1", "img9"], None, ["q?", "q?"]) == ["yes", "i don't know"]
    with pytest.raises(AnswerStoreError) as caught:
        StoreAnswerer(store).answer(["img1", "img9", "img8"], None, ["q?", "what is it?", "q?"])
    assert caught.value.reason == "unanswered"
    assert "'what is it?'" in str(caught.value) and "'img9'" in str(caught.value) and "2 of 3" in str(caught.value)


def test_store_answerer_refuses_an_inner_of_another_fingerprint_and_respects_readonly(tmp_path):
    path = tmp_path / "a.sqlite"
    AnswerStore(path, "fp").close()
    with pytest.raises(AnswerStoreMismatchError, match="'other'"):
        StoreAnswerer(AnswerStore(path, "fp"), CountingAnswerer("other"))
    reader = AnswerStore(path, "fp", readonly=True)
    assert StoreAnswerer(reader, CountingAnswerer()).answer(["img"], None, ["q?"]) == ["q? about img"]
    assert len(reader) == 0  # a read-only store answers misses without storing them


# --------------------------------------------------------------------------- fingerprints
def test_shapes_oracle_fingerprint_tells_corpora_and_noise_apart():
    from chatir_env.worlds import build_world

    small = build_world("shapes_oracle", corpus_size=300, num_targets=3).answerer
    same = build_world("shapes_oracle", corpus_size=300, num_targets=5).answerer
    larger = build_world("shapes_oracle", corpus_size=400, num_targets=3).answerer
    noisy = build_world("shapes_oracle", corpus_size=300, num_targets=3, answer_noise=0.1).answerer
    assert small.fingerprint == same.fingerprint
    assert small.fingerprint.startswith("shapes-oracle-v1-noise0-seed0-")
    assert noisy.fingerprint.startswith("shapes-oracle-v1-noise0.1-seed0-")
    assert len({small.fingerprint, larger.fingerprint, noisy.fingerprint}) == 3


def test_blip2_fingerprint_follows_weights_prompt_and_decoding(tmp_path):
    pytest.importorskip("transformers")
    from chatir_env.answerers.blip2 import Blip2Answerer
    from chatir_env.testing import tiny_blip2

    model, processor = tiny_blip2("opt", seed=1)
    first = Blip2Answerer(model, processor, lambda _: None, device="cpu")
    first.save_pretrained(tmp_path / "m")
    loaded = Blip2Answerer.from_pretrained(tmp_path / "m", lambda _: None, device="cpu", batch_size=3)
    assert first.fingerprint == loaded.fingerprint and first.fingerprint.startswith("blip2-") and len(first.fingerprint) == 22
    variants = [
        Blip2Answerer.from_pretrained(tmp_path / "m", lambda _: None, device="cpu", prompt="Q: {question} A:"),
        Blip2Answerer.from_pretrained(tmp_path / "m", lambda _: None, device="cpu", max_new_tokens=5),
        Blip2Answerer(*tiny_blip2("opt", seed=2), lambda _: None, device="cpu"),
    ]
    assert len({first.fingerprint, *(v.fingerprint for v in variants)}) == 4


# --------------------------------------------------------------------------- importing released files
def _write_release(path: Path, entries) -> Path:
    path.write_text(json.dumps([{"img": img, "dialog": dialog} for img, dialog in entries]))
    return path


def test_import_released_dialog_files(tmp_path):
    first = _write_release(tmp_path / "Human_BLIP2.json", [
        ("unlabeled2017/a.jpg", ["a dog", "is it sunny? yes", "What kind of beach is it? Sandy or rocky? sandy",
                                 "a turn with no boundary", "is it sunny? no"]),
        ("unlabeled2017/b.jpg", ["a cat", "How many  cats? Answer: two"]),
    ])
    second = _write_release(tmp_path / "ChatGPT_BLIP2.json", [
        ("unlabeled2017/a.jpg", ["a dog", "is it SUNNY? no", "what color is the dog? brown"]),
    ])
    with AnswerStore(tmp_path / "s.sqlite", CHATIR_RELEASE_FINGERPRINT) as store:
        report = import_dialog_files(store, [first, second])
        assert report == {
            "Human_BLIP2.json": {"turns": 5, "added": 3, "kept_earlier": 1, "unsplittable": 1},
            "ChatGPT_BLIP2.json": {"turns": 2, "added": 1, "kept_earlier": 1, "unsplittable": 0},
        }
        assert store.items() == [
            ("unlabeled2017/a.jpg", "is it sunny?", "yes"),  # the first file's first answer wins
            ("unlabeled2017/a.jpg", "what color is the dog?", "brown"),
            ("unlabeled2017/a.jpg", "what kind of beach is it? sandy or rocky?", "sandy"),
            ("unlabeled2017/b.jpg", "how many cats?", "Answer: two"),  # stored exactly as recorded
        ]
        assert import_dialog_files(store, [first])["Human_BLIP2.json"]["added"] == 0  # re-importing adds nothing
    human = _write_release(tmp_path / "VisDial_v1.0_queries_val.json",
                           [("unlabeled2017/a.jpg", ["a dog", "is it sunny? yes"])])
    with AnswerStore(tmp_path / "s.sqlite", CHATIR_RELEASE_FINGERPRINT) as store:
        with pytest.raises(AnswerStoreMismatchError, match=VISDIAL_HUMAN_FINGERPRINT):
            import_dialog_files(store, [human])


def test_answer_import_command(tmp_path, capsys):
    release = _write_release(tmp_path / "Human_BLIP2.json", [("unlabeled2017/a.jpg", ["a dog", "is it sunny? yes"])])
    store = tmp_path / "s.sqlite"
    assert cli_main(["answer", "--import", str(release), "--store", str(store)]) == 0
    assert "1 answers added" in capsys.readouterr().out
    assert read_fingerprint(store) == CHATIR_RELEASE_FINGERPRINT
    AnswerStore(tmp_path / "live.sqlite", "blip2-0123").close()
    assert cli_main(["answer", "--import", str(release), "--store", str(tmp_path / "live.sqlite")]) == 1
    err = capsys.readouterr().err
    assert "blip2-0123" in err and CHATIR_RELEASE_FINGERPRINT in err


def test_import_matches_the_recorded_answerer_on_the_release(tmp_path):
    from chatir_env.answerers.recorded import RecordedAnswerer
    from chatir_env.data.chatir_files import default_data_dir

    data_dir = default_data_dir()
    if data_dir is None or not (data_dir / "Human_BLIP2.json").is_file():
        pytest.skip("the ChatIR release files are not here (set $CHATIR_DATA or run `chatir download`)")
    path = data_dir / "Human_BLIP2.json"
    recorded = RecordedAnswerer.from_files([path])
    with AnswerStore(tmp_path / "release.sqlite", CHATIR_RELEASE_FINGERPRINT) as store:
        import_dialog_files(store, [path])
        keys = [(t, q) for t in recorded.targets for q in recorded.question_pool(t)]
        assert len(keys) > 18_000
        assert store.get_many(keys) == [recorded.answer_one(t, q) for t, q in keys]


# --------------------------------------------------------------------------- chatir answer
def _oracle_answers(world, rows):
    return world.answerer.answer([r[0] for r in rows], [Dialog(world.captions[r[0]]) for r in rows], [r[1] for r in rows])


def test_answer_command_fills_resumes_and_limits(tmp_path, capsys):
    from chatir_env.worlds import build_world
    from chatir_env.worlds.shapes_language import POOL_TEXTS

    world = build_world("shapes_oracle", corpus_size=300, num_targets=3)
    store = tmp_path / "s.sqlite"
    assert cli_main(["answer", *SHAPES, "--store", str(store), "--batch-size", "50", "--limit", "100", "--no-progress"]) == 0
    assert "answered 100 of 363" in capsys.readouterr().out
    with AnswerStore(store, world.answerer.fingerprint, readonly=True) as s:
        assert len(s) == 100
    assert cli_main(["answer", *SHAPES, "--store", str(store), "--batch-size", "64", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "answered 263 of 363" in out and "100 were already stored" in out
    with AnswerStore(store, world.answerer.fingerprint, readonly=True) as s:
        rows = s.items()
    assert len(rows) == 3 * len(POOL_TEXTS)
    assert {r[0] for r in rows} == set(world.targets)
    assert [r[2] for r in rows] == _oracle_answers(world, rows)
    assert cli_main(["answer", *SHAPES, "--store", str(store), "--no-progress"]) == 0
    assert "answered 0 of 363" in capsys.readouterr().out


def test_answer_command_errors(tmp_path, capsys, monkeypatch):
    store = tmp_path / "s.sqlite"
    AnswerStore(store, "blip2-0123").close()
    assert cli_main(["answer", *SHAPES, "--store", str(store), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "blip2-0123" in err and "shapes-oracle-v1" in err
    assert cli_main(["answer", "--world", "no_such_world", "--store", str(tmp_path / "t.sqlite")]) == 1
    assert "unknown world 'no_such_world'" in capsys.readouterr().err
    assert cli_main(["answer", "--store", str(tmp_path / "t.sqlite")]) == 1
    assert "--world" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert cli_main(["answer", *SHAPES, "--store", str(tmp_path / "t.sqlite"), "--engine", "ray", "--no-progress"]) == 1
    assert "pip install 'chatir-env[ray]'" in capsys.readouterr().err


SLOW_FACTORY = '''
import time


class SlowAnswerer:
    """The world's oracle, slowed down so a test can kill the job between batches."""

    def __init__(self, inner, delay):
        self.inner, self.delay, self.fingerprint = inner, delay, inner.fingerprint

    def answer(self, targets, dialogs, questions):
        time.sleep(self.delay)
        return self.inner.answer(targets, dialogs, questions)


def make(world, delay=0.0):
    return SlowAnswerer(world.answerer, delay)
'''


def test_killed_answer_job_resumes_to_the_uninterrupted_result(tmp_path):
    (tmp_path / "slow_factory.py").write_text(SLOW_FACTORY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    killed, whole = tmp_path / "killed.sqlite", tmp_path / "whole.sqlite"
    command = [sys.executable, "-m", "chatir_env.cli", "answer", *SHAPES, "--answerer", "slow_factory:make",
               "--batch-size", "11", "--no-progress"]
    job = subprocess.Popen([*command, "--answerer-arg", "delay=0.25", "--store", str(killed)], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        committed = 0
        while committed < 33:  # at least three batches committed
            assert job.poll() is None, job.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the answer job committed nothing within 120 s"
            time.sleep(0.1)
            if killed.exists():
                try:
                    with AnswerStore(killed, read_fingerprint(killed), readonly=True) as reader:
                        committed = len(reader)
                except AnswerStoreError:
                    committed = 0  # the store is being created
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    with AnswerStore(killed, read_fingerprint(killed), readonly=True) as reader:
        partial = len(reader)
    assert 33 <= partial < 363 and partial % 11 == 0  # whole batches only
    subprocess.run([*command, "--store", str(killed)], cwd=REPO, env=env, check=True, capture_output=True)
    subprocess.run([*command, "--store", str(whole)], cwd=REPO, env=env, check=True, capture_output=True)
    fingerprint = read_fingerprint(whole)
    with AnswerStore(killed, fingerprint, readonly=True) as resumed:
        rows = resumed.items()
    with AnswerStore(whole, fingerprint, readonly=True) as uninterrupted:
        assert rows == uninterrupted.items()
    assert len(rows) == 363 and len({(r[0], r[1]) for r in rows}) == 363


def test_answer_command_with_a_tiny_blip2(tmp_path, capsys):
    pytest.importorskip("transformers")
    from chatir_env.answerers.blip2 import Blip2Answerer
    from chatir_env.testing import tiny_blip2
    from chatir_env.worlds import build_world

    model_dir = tmp_path / "blip2"
    Blip2Answerer(*tiny_blip2("opt", seed=3), lambda _: None, device="cpu").save_pretrained(model_dir)
    store = tmp_path / "blip2.sqlite"
    args = ["answer", *SHAPES, "--answerer-model", str(model_dir), "--answerer-arg", "device=cpu",
            "--answerer-arg", "max_new_tokens=3", "--store", str(store), "--batch-size", "8", "--limit", "20", "--no-progress"]
    assert cli_main(args) == 0
    world = build_world("shapes_oracle", corpus_size=300, num_targets=3)
    direct = Blip2Answerer.from_pretrained(model_dir, world.image, device="cpu", max_new_tokens=3)
    with AnswerStore(store, direct.fingerprint, readonly=True) as s:
        rows = s.items()
    assert len(rows) == 20
    for image_id, question, answer in rows:
        assert direct.answer([image_id], None, [question]) == [answer]
