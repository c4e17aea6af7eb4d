"""ChatIR release files: loaders, turn splitting, recorded answers, download, and the offline benchmark.

Tests that read the official release skip when it is absent: set CHATIR_DATA, or keep it in
../shared/data/chatir next to the checkout. Strings in this file are made up, not taken from it.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from chatir_env.answerers.recorded import UNKNOWN_ANSWER, RecordedAnswerer, UnknownQuestionError
from chatir_env.cli import main as cli_main
from chatir_env.data import download as dl
from chatir_env.data.chatir_files import (
    BLIP2_DIALOG_FILES,
    DIALOG_FILES,
    SEARCH_SPACE_FILE,
    DialogFileError,
    clean_answer,
    clean_question,
    load_data_dir,
    load_dialog_file,
    load_search_space,
    load_visdial,
    split_turn,
)
from chatir_env.dialog import Dialog
from chatir_env.eval.eval_dialogs import evaluate_dialog_file
from chatir_env.index import ImageIndex
from chatir_env.metrics import hits_at_k

REPO = Path(__file__).resolve().parents[1]


from conftest import CHATIR_DATA as DATA  # noqa: E402
from conftest import needs_chatir_data as needs_data  # noqa: E402


@functools.lru_cache(maxsize=None)
def _raw(name: str) -> list:
    return json.loads((DATA / name).read_text())


@functools.lru_cache(maxsize=None)
def _records(name: str) -> list:
    return load_dialog_file(DATA / name)


# --- turn splitting (made-up strings) --------------------------------------------------------------


@pytest.mark.parametrize(
    "turn, question, answer, answerable",
    [
        ("is the cup full? no", "is the cup full?", "no", True),
        ("What kind of road is it? Dirt or paved? paved", "What kind of road is it? Dirt or paved?", "paved", True),
        ("What color is the cup? Answer: red Answer: blue blue", "What color is the cup?", "Answer: red Answer: blue blue",
         True),
        ("Is the lamp on?\nAnswer: it is on yes", "Is the lamp on?\nAnswer:", "it is on yes", True),
        ("What is on the shelf?  two books", "What is on the shelf?", " two books", True),
        ("Is the sofa big  no", "Is the sofa big ", "no", True),
        ("Is it sunny? ", "Is it sunny? ", "", True),
        ("Is it sunny?", "Is it sunny?", "", True),
        ("what time of day", "what time of day", "", False),
        ("", "", "", False),
    ],
)
def test_split_turn_rules(turn, question, answer, answerable):
    split = split_turn(turn)
    assert (split.question, split.answer, split.answerable) == (question, answer, answerable)
    assert split.joined() == turn  # Dialog.text() rebuilds the turn exactly


def test_clean_strings():
    assert clean_question("Is the lamp on?\nAnswer:") == "Is the lamp on?"
    assert clean_answer("Answer: red  Answer: blue") == "red Answer: blue"
    assert clean_answer(" Answer:  answer: two ") == "two"


@needs_data
@pytest.mark.parametrize("name", DIALOG_FILES)
def test_dialog_text_reproduces_official_join(name):
    """Dialog.text() at every round is ChatIR eval.py's ', '.join(dialog[:t + 1]), on every entry."""
    raw, records = _raw(name), _records(name)
    assert len(records) == len(raw) == 2064
    for entry, (image_id, dialog) in zip(raw, records):
        assert image_id == entry["img"]
        assert dialog.round == 10
        for t in range(11):
            assert dialog.truncated(t).text() == ", ".join(entry["dialog"][: t + 1])
    unsplit = sum(not split_turn(t).answerable for e in raw for t in e["dialog"][1:])
    if name in ("ChatGPT_BLIP2.json", "Human_BLIP2.json", "VisDial_v1.0_queries_val.json"):
        assert unsplit == 0
    else:
        assert unsplit < 0.02 * 20640


@needs_data
def test_search_space_and_targets():
    ids = load_search_space(DATA / SEARCH_SPACE_FILE)
    assert len(ids) == len(set(ids)) == 50_000
    loaded = load_data_dir(DATA)  # checks every target against the search space
    orders = {name: [t for t, _ in recs] for name, recs in loaded.items()}
    first = orders[DIALOG_FILES[0]]
    assert all(order == first for order in orders.values())  # same targets, same order


# --- bad input ---------------------------------------------------------------------------------------


def _write(tmp_path: Path, data, name="dialogs.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


GOOD = [
    {"img": "imgs/a.jpg", "dialog": ["a red cup on a table", "is the cup full? no", "is it sunny? yes"]},
    {"img": "imgs/b.jpg", "dialog": ["two dogs on grass", "are they running? yes"]},
]


@pytest.mark.parametrize(
    "data, needle",
    [
        (json.dumps(GOOD)[:70].encode(), "cut short"),
        (b'[{"img": "imgs/a.jpg", "dialog": ["x",]}]', "not valid JSON"),
        (b"", "is empty"),
        ("[]café".encode("latin-1"), "not UTF-8"),
        ({"img": "imgs/a.jpg"}, "JSON list"),
        ([GOOD[0], "imgs/b.jpg"], "entry 1: must be an object"),
        ([GOOD[0], {"dialog": ["c"]}], "entry 1: has no field 'img'"),
        ([GOOD[0], {"img": "imgs/b.jpg"}], "entry 1: has no field 'dialog'"),
        ([GOOD[0], {"img": 7, "dialog": ["c"]}], "entry 1: field 'img' must be a non-empty string, got int"),
        ([GOOD[0], {"img": "imgs/b.jpg", "dialog": "c"}], "entry 1: field 'dialog' must be a non-empty list"),
        ([GOOD[0], {"img": "imgs/b.jpg", "dialog": []}], "entry 1: field 'dialog' must be a non-empty list"),
        ([GOOD[0], {"img": "imgs/b.jpg", "dialog": ["c", "q? a", 3]}], "entry 1: dialog[2] must be a string, got int"),
        ([GOOD[0], {"img": "imgs/b.jpg", "dialog": [None]}], "entry 1: dialog[0] must be a string, got null"),
    ],
)
def test_bad_dialog_files_name_file_and_entry(tmp_path, data, needle):
    path = _write(tmp_path, data)
    with pytest.raises(DialogFileError) as err:
        load_dialog_file(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_missing_file_and_target_outside_corpus(tmp_path):
    with pytest.raises(DialogFileError, match="does not exist"):
        load_dialog_file(tmp_path / "nope.json")
    path = _write(tmp_path, GOOD)
    assert [t for t, _ in load_dialog_file(path, corpus=["imgs/a.jpg", "imgs/b.jpg"])] == ["imgs/a.jpg", "imgs/b.jpg"]
    with pytest.raises(DialogFileError) as err:
        load_dialog_file(path, corpus=["imgs/a.jpg", "imgs/c.jpg"])
    assert f"{path}, entry 1: target 'imgs/b.jpg' is not in the corpus" in str(err.value)


def test_bad_search_space(tmp_path):
    assert load_search_space(_write(tmp_path, ["x/1.jpg", "x/2.jpg"])) == ["x/1.jpg", "x/2.jpg"]
    for data, needle in [
        (["x/1.jpg", "x/2.jpg", "x/1.jpg"], "entry 2: repeats 'x/1.jpg' (first at entry 0)"),
        (["x/1.jpg", 5], "entry 1: must be a non-empty string"),
        ({"x": 1}, "JSON list of image paths"),
        (b'["x/1.jpg", "x/2', "cut short"),
    ]:
        path = _write(tmp_path, data, "space.json")
        with pytest.raises(DialogFileError) as err:
            load_search_space(path)
        assert str(path) in str(err.value) and needle in str(err.value)


# --- VisDial v1.0 --------------------------------------------------------------------------------------


def _visdial_json(entries: list[tuple[int, str, list[tuple[str, str]]]]) -> dict:
    questions, answers, dialogs = [], [], []
    for image_id, caption, turns in entries:
        rounds = []
        for q, a in turns:
            questions.append(q)
            answers.append(a)
            rounds.append({"question": len(questions) - 1, "answer": len(answers) - 1, "answer_options": []})
        dialogs.append({"image_id": image_id, "caption": caption, "dialog": rounds})
    return {"version": "1.0", "split": "val2018", "data": {"questions": questions, "answers": answers, "dialogs": dialogs}}


def test_visdial_loader_and_errors(tmp_path):
    data = _visdial_json([(42, "a cat on a mat", [("is it black", "yes"), ("is it asleep?", "no")])])
    data["data"]["dialogs"][0]["dialog"].append({"question": 0})  # test split: last round unanswered
    path = _write(tmp_path, data, "visdial.json")
    [(target, dialog)] = load_visdial(path, image_id="unlabeled2017/{image_id:012d}.jpg")
    assert target == "unlabeled2017/000000000042.jpg"
    assert dialog.text() == "a cat on a mat, is it black? yes, is it asleep? no, is it black?"
    with pytest.raises(DialogFileError, match="entry 0: target 'unlabeled2017/000000000042.jpg' is not in the corpus"):
        load_visdial(path, image_id="unlabeled2017/{image_id:012d}.jpg", corpus={"x.jpg"})
    bad = json.loads(json.dumps(data))
    bad["data"]["dialogs"][0]["dialog"][1]["answer"] = 99
    with pytest.raises(DialogFileError, match=r"visdial\.json, entry 0: round 1 has answer index 99"):
        load_visdial(_write(tmp_path, bad, "visdial.json"))
    bad = json.loads(json.dumps(data))
    del bad["data"]["dialogs"][0]["caption"]
    with pytest.raises(DialogFileError, match="entry 0: has no field 'caption'"):
        load_visdial(_write(tmp_path, bad, "visdial.json"))
    with pytest.raises(DialogFileError, match="no field 'answers'"):
        load_visdial(_write(tmp_path, {"data": {"questions": [], "dialogs": []}}, "visdial.json"))


@needs_data
def test_visdial_format_round_trip_matches_chatir_queries(tmp_path):
    """ChatIR's VisDial queries rewritten in VisDial v1.0 form load back to the same dialogs."""
    records = _records("VisDial_v1.0_queries_val.json")
    entries = [
        (int(Path(t).stem), d.caption, [(q.removesuffix("?"), a) for q, a in d.turns]) for t, d in records
    ]
    path = _write(tmp_path, _visdial_json(entries), "visdial_val.json")
    corpus = set(load_search_space(DATA / SEARCH_SPACE_FILE))
    loaded = load_visdial(path, image_id="unlabeled2017/{image_id:012d}.jpg", corpus=corpus)
    assert loaded == records


# --- recorded answers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded():
    if DATA is None:
        pytest.skip("the ChatIR release is not here (CHATIR_DATA)")
    return RecordedAnswerer.from_data_dir(DATA)


@needs_data
def test_recorded_replay_rebuilds_the_first_file_exactly(recorded):
    """Replaying ChatGPT's questions through the answerer rebuilds ChatGPT_BLIP2.json's query strings."""
    raw = _raw(BLIP2_DIALOG_FILES[0])
    for entry, (target, dialog) in zip(raw, _records(BLIP2_DIALOG_FILES[0])):
        replay = Dialog(dialog.caption)
        for q in dialog.questions:
            [a] = recorded.answer([target], [replay], [q])
            replay = replay.with_turn(q, a)
        assert replay.text() == ", ".join(entry["dialog"])
    assert recorded.unknown_count == 0


@needs_data
def test_recorded_answers_and_pool_cover_all_four_files(recorded):
    sizes = []
    for target in recorded.targets:
        pool = recorded.question_pool(target)
        assert len(pool) == len({q.strip().casefold() for q in pool})
        sizes.append(len(pool))
    assert len(sizes) == 2064 and 20 <= min(sizes) and max(sizes) <= 40 and np.mean(sizes) > 30
    for name in BLIP2_DIALOG_FILES:
        for target, dialog in _records(name)[::50]:
            for q, a in dialog.turns:
                if split_turn(" ".join(p for p in (q, a) if p)).answerable:
                    assert a in [turn.answer for turn in recorded.answers_for(target, q)]


@needs_data
def test_recorded_unknown_question_policies():
    answerer = RecordedAnswerer.from_files([DATA / "Human_BLIP2.json"])
    target = answerer.targets[0]
    dialog = Dialog("a caption")
    assert answerer.answer([target], [dialog], ["is there a purple giraffe on the moon?"]) == [UNKNOWN_ANSWER]
    assert answerer.unknown_count == 1
    strict = RecordedAnswerer.from_files([DATA / "Human_BLIP2.json"], on_unknown="error")
    with pytest.raises(UnknownQuestionError, match="purple giraffe.*" + target):
        strict.answer([target], [dialog], ["is there a purple giraffe on the moon?"])
    with pytest.raises(UnknownQuestionError, match="no-such-image.jpg"):
        strict.answer(["no-such-image.jpg"], [dialog], ["is it red?"])


def test_recorded_answerer_rules_on_made_up_records():
    records = {
        "q1.json": [("t.jpg", Dialog("cap", (("What color is the cup?", "Answer: red Answer: blue  blue"),
                                             ("Is it on a table?", "yes"))))],
        "q2.json": [("t.jpg", Dialog("cap", (("what color is the cup?", "green"), ("what time of day", ""),
                                             ("Is it new?", "no"))))],
    }
    exact = RecordedAnswerer(records)
    assert exact.question_pool("t.jpg") == ["What color is the cup?", "Is it on a table?", "Is it new?"]  # no unsplit turn
    # each pool question with its first recording and where that came from
    assert [(e.source, e.entry, e.turn, e.answer) for e in exact.pool_entries("t.jpg")] == [
        ("q1.json", 0, 1, "Answer: red Answer: blue  blue"), ("q1.json", 0, 2, "yes"), ("q2.json", 0, 3, "no")]
    assert exact.answer(["t.jpg"], [Dialog("cap")], ["WHAT color is the  cup?"]) == ["Answer: red Answer: blue  blue"]
    assert [t.answer for t in exact.answers_for("t.jpg", "what color is the cup?")] == [
        "Answer: red Answer: blue  blue", "green"]
    assert RecordedAnswerer(records, clean=True).answer_one("t.jpg", "What color is the cup?") == "red Answer: blue blue"
    with pytest.raises(ValueError, match="one target, dialog and question"):
        exact.answer(["t.jpg"], [], ["x?"])


# --- download ------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _spec_for(root: Path, rel: str, content: bytes) -> dl.ReleaseFile:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(content)
    return dl.ReleaseFile(Path(rel).name, rel, len(content), hashlib.sha256(content).hexdigest())


def test_download_checks_size_and_checksum_atomically(tmp_path, http_root):
    root, url = http_root
    specs = (_spec_for(root, "dialogues/a.json", b'[{"img": "x.jpg", "dialog": ["c"]}]' * 500),
             _spec_for(root, "proto/space.json", b'["x.jpg"]'))
    out = tmp_path / "data"
    logs: list[str] = []
    paths = dl.download(out, files=specs, base_url=url, log=logs.append)
    assert [p.name for p in paths] == ["a.json", "space.json"]
    assert all(dl.is_complete(out / s.name, s) for s in specs)
    assert all(line.startswith("fetched") for line in logs)
    logs.clear()
    dl.download(out, files=specs, base_url=url, log=logs.append)
    assert all(line.startswith("ok") for line in logs)  # intact files are not fetched again

    # The server now serves altered / cut-short bytes: refused, the old good file stays, no temp left.
    (root / "dialogues/a.json").write_bytes(b"X" * specs[0].size)
    (out / "a.json").write_bytes(b"damaged")
    with pytest.raises(dl.DownloadError, match="SHA-256 .* does not match"):
        dl.download(out, files=specs, base_url=url, log=logs.append)
    assert (out / "a.json").read_bytes() == b"damaged"
    (root / "dialogues/a.json").write_bytes(b"[]")
    with pytest.raises(dl.DownloadError, match="got 2 bytes, expected"):
        dl.download(out, files=specs, base_url=url, log=logs.append)
    (root / "dialogues/a.json").unlink()
    with pytest.raises(dl.DownloadError, match="download failed"):
        dl.download(out, files=specs, base_url=url, log=logs.append)
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "space.json"]


@needs_data
def test_download_command_with_the_release_table(tmp_path, http_root, capsys):
    """The real URL table and checksums, served from a local copy laid out like the GitHub repo."""
    root, url = http_root
    for spec in dl.RELEASE_FILES:
        (root / spec.path).parent.mkdir(parents=True, exist_ok=True)
        (root / spec.path).symlink_to(DATA / spec.name)
        assert dl.BASE_URL + spec.path == f"https://raw.githubusercontent.com/levymsn/ChatIR/{dl.COMMIT}/{spec.path}"
    out = tmp_path / "data"
    assert cli_main(["download", "--data-dir", str(out), "--base-url", url]) == 0
    for spec in dl.RELEASE_FILES:
        assert (out / spec.name).read_bytes() == (DATA / spec.name).read_bytes()
    assert cli_main(["download", "--data-dir", str(tmp_path / "other"), "--base-url", url + "missing/"]) == 1
    assert "download failed" in capsys.readouterr().err


# --- the offline benchmark on the release files ----------------------------------------------------------


class HashBowRetriever(torch.nn.Module):
    """Dialog -> hashed bag-of-words counts: small integer vectors, so scores are exact and tie often."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.dim = dim
        self.fingerprint = f"hash-bow-{dim}"
        self.device = torch.device("cpu")

    def encode_dialogs(self, dialogs) -> torch.Tensor:
        out = torch.zeros(len(dialogs), self.dim)
        for i, d in enumerate(dialogs):
            for word in d.text().lower().replace(",", " ").replace("?", " ").split():
                out[i, zlib.crc32(word.encode()) % self.dim] += 1
        return out

    def encode_images(self, items):
        raise NotImplementedError


def _argsort_ranks(queries: torch.Tensor, corpus: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Like ChatIR's eval.py: sort scores descending (stably), find where the target landed."""
    scores = (queries @ corpus.T).numpy()
    assert np.abs(scores).max() < 2**14 and np.all(scores == np.round(scores))
    order = np.argsort(-scores.astype(np.int16), axis=1, kind="stable")  # exact integers: radix sort
    return torch.from_numpy(np.nonzero(order == targets.numpy()[:, None])[1])


@needs_data
@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.skipif(
    not os.environ.get("CHATIR_SLOW_TESTS"), reason="all 2,064 targets x 5 files takes minutes: set CHATIR_SLOW_TESTS=1"))])
def test_eval_hits_match_an_argsort_ranking_on_all_five_files(full):
    retriever = HashBowRetriever()
    ids = load_search_space(DATA / SEARCH_SPACE_FILE)
    g = torch.Generator().manual_seed(0)
    emb = torch.randint(-1, 2, (len(ids), retriever.dim), generator=g).float()
    # Plant each target near its full ChatGPT dialog, so ranks move with the rounds.
    position = {image_id: i for i, image_id in enumerate(ids)}
    chatgpt = _records("ChatGPT_BLIP2.json")
    words = retriever.encode_dialogs([d for _, d in chatgpt]) > 0
    emb[torch.tensor([position[t] for t, _ in chatgpt])] = (
        2 * words.float() + torch.randint(-1, 2, words.shape, generator=g).float())
    index = ImageIndex(emb, ids, retriever.fingerprint)
    step = 1 if full else 32
    for name in DIALOG_FILES:
        dialogs = _records(name)[::step]
        ranks = evaluate_dialog_file(retriever, index, dialogs)
        assert ranks.shape == (11, len(dialogs))
        targets = index.positions([t for t, _ in dialogs])
        expected = torch.stack([
            _argsort_ranks(retriever.encode_dialogs([d.truncated(t) for _, d in dialogs]), emb, targets) for t in range(11)
        ])
        assert torch.equal(ranks, expected), name
        hits = hits_at_k(ranks)
        independent = [100.0 * np.mean([(expected[: t + 1, q] < 10).any().item() for q in range(len(dialogs))])
                       for t in range(11)]
        np.testing.assert_allclose(hits, independent)
        assert 5 < hits[0] < hits[-1] < 100, name  # neither trivial nor saturated
