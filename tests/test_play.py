"""`chatir play`: the terminal loop driven by scripted input (Shapes worlds and a folder of images)."""

from __future__ import annotations

import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from chatir_env.agents.base import SHAPES_TEMPLATE_QUESTIONS, ShapesTemplateQuestioner
from chatir_env.dialog import Dialog
from chatir_env.eval.play import contact_sheet, play_session, run
from chatir_env.worlds import build_world

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return build_world("shapes_oracle", corpus_size=2000, num_targets=50)


def oracle_answers(world, target, questions):
    d, out = Dialog(world.captions[target]), []
    for q in questions:
        a = world.answerer.answer([target], [d], [q])[0]
        out.append(a)
        d = d.with_turn(q, a)
    return out


def test_contact_sheet_layout_and_highlight():
    images = [Image.new("RGB", (36, 36), (200, 0, 0))] * 9 + [None]
    sheet = contact_sheet(images, [f"{i}" for i in range(10)], [i == 2 for i in range(10)], title="t", cell=64)
    assert sheet.size == (5 * 68 + 4, 22 + 2 * (64 + 18 + 4) + 4)
    x, y = 4 + 2 * 68, 22 + 4
    assert sheet.getpixel((x, y + 10)) == (0, 200, 0)  # the green frame of image 2
    assert sheet.getpixel((4 + 32, 26 + 32)) == (200, 0, 0)  # a tiny render scaled up, not blurred


def test_answerer_role_scripted(world, tmp_path):
    target = world.targets[3]
    answers = oracle_answers(world, target, SHAPES_TEMPLATE_QUESTIONS[:4])
    stdin = io.StringIO("".join(a + "\n" for a in answers))
    stdout = io.StringIO()
    result = play_session(world, questioner=ShapesTemplateQuestioner(), target=target, rounds=4,
                          out_dir=tmp_path, stdin=stdin, stdout=stdout)
    text = stdout.getvalue()
    assert result.completed and len(result.ranks) == 5 and all(isinstance(r, int) and r >= 1 for r in result.ranks)
    assert min(result.ranks) <= result.ranks[0] and result.ranks[-1] <= 10  # truthful answers find it
    assert text.count("target rank:") == 5 and f"caption: {world.captions[target]}" in text
    for r in range(5):
        sheet = Image.open(tmp_path / f"round_{r:02d}.png")
        assert sheet.size[0] > 5 * 160 and sheet.size[1] > 2 * 160
    assert (tmp_path / "target.png").exists()
    log = json.loads((tmp_path / "dialog.json").read_text())
    assert [t["question"] for t in log["turns"]] == list(SHAPES_TEMPLATE_QUESTIONS[:4])
    assert [t["answer"] for t in log["turns"]] == answers and log["ranks"] == result.ranks and log["completed"]
    assert target in result.top[-1]


def test_pick_a_target_and_quit_early(world, tmp_path):
    stdin = io.StringIO("3\none\n:quit\n")
    stdout = io.StringIO()
    result = play_session(world, questioner=ShapesTemplateQuestioner(), pick=True, candidates=6, rounds=5,
                          out_dir=tmp_path, stdin=stdin, stdout=stdout)
    assert (tmp_path / "candidates.png").exists()
    listed = [line.split()[1] for line in stdout.getvalue().splitlines() if line.startswith("   3. ")]
    assert result.target == listed[0] and not result.completed
    assert result.dialog.turns == (("how many objects are there?", "one"),) and len(result.ranks) == 2
    assert "stopped." in stdout.getvalue()
    assert json.loads((tmp_path / "dialog.json").read_text())["completed"] is False


def test_questioner_role_scripted(world, tmp_path):
    target = world.targets[5]
    stdin = io.StringIO("what is the background?\n:help\n\nhow many objects are there?\n")  # then end of input
    stdout = io.StringIO()
    result = play_session(world, role="questioner", target=target, rounds=3, out_dir=tmp_path, stdin=stdin, stdout=stdout)
    text = stdout.getvalue()
    truth = oracle_answers(world, target, ["what is the background?", "how many objects are there?"])
    assert result.dialog.answers == tuple(truth)
    assert f"A1: {truth[0]}" in text and f"A2: {truth[1]}" in text
    assert "examples this world understands" in text and "empty question" in text  # :help, then the refused ""
    assert len(result.ranks) == 3 and (tmp_path / "round_02.png").exists() and not (tmp_path / "round_03.png").exists()
    assert f"the target was {target}" in text and (tmp_path / "target.png").exists()


COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


class ToyRetriever:
    """Images -> mean RGB; dialogs -> the colour words they mention. Enough to rank a toy folder."""

    fingerprint = "toy-colour-v1"
    dim = 3
    device = torch.device("cpu")

    def encode_images(self, images):
        v = torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), dtype=np.float32).mean((0, 1)) for im in images]))
        return torch.nn.functional.normalize(v, dim=1)

    def encode_dialogs(self, dialogs):
        rows = []
        for d in dialogs:
            words = d.text().lower().replace(",", " ").split()
            rows.append([words.count(c) + 0.01 for c in COLOURS])
        return torch.nn.functional.normalize(torch.tensor(rows), dim=1)


def test_own_image_folder_via_the_cli(tmp_path, monkeypatch):
    from chatir_env.cli import build_parser
    from chatir_env.data.images import ImageCorpus
    from chatir_env.data.index_cli import build_index

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, rgb in COLOURS.items():
        for i in range(4):
            Image.new("RGB", (40 + i, 30), rgb).save(folder / f"{name}_{i}.png")
    build_index(ToyRetriever(), ImageCorpus.from_folder(folder), tmp_path / "my.index", progress=False)
    module = types.ModuleType("toy_play_retriever")
    module.ToyRetriever = ToyRetriever
    monkeypatch.setitem(sys.modules, "toy_play_retriever", module)
    out = tmp_path / "play"
    args = build_parser().parse_args(["play", "--index", str(tmp_path / "my.index"),
                                      "--retriever", "toy_play_retriever:ToyRetriever",
                                      "--rounds", "2", "--out", str(out)])
    stdin, stdout = io.StringIO("\na blue picture\noutdoors\n\n"), io.StringIO()
    assert run(args, stdin=stdin, stdout=stdout) == 0
    text = stdout.getvalue()
    assert text.count("no target: no rank") == 3 and "Q1: what is in the background?" in text  # the generic questioner
    log = json.loads((out / "dialog.json").read_text())
    assert log["caption"] == "a blue picture" and log["target"] is None and log["ranks"] == [None] * 3
    assert [t["answer"] for t in log["turns"]] == ["outdoors", "i don't know"]  # empty answer
    assert all(x.startswith("blue_") for x in log["top"][0][:4])
    assert len(log["top"][0]) == 10 and Image.open(out / "round_02.png").size[0] > 160


def test_cli_shapes_world_and_errors(tmp_path, capsys):
    from chatir_env.cli import build_parser

    w = build_world("shapes_oracle", corpus_size=300, num_targets=10)
    target = w.targets[0]
    answers = oracle_answers(w, target, SHAPES_TEMPLATE_QUESTIONS[:2])
    args = build_parser().parse_args(["play", "--world-arg", "corpus_size=300", "--world-arg", "num_targets=10",
                                      "--target", target, "--rounds", "2", "--out", str(tmp_path)])
    stdout = io.StringIO()
    assert run(args, stdin=io.StringIO("\n".join(answers) + "\n"), stdout=stdout) == 0
    assert stdout.getvalue().count("target rank:") == 3 and (tmp_path / "round_02.png").exists()
    args = build_parser().parse_args(["play", "--world-arg", "corpus_size=300", "--target", "nope", "--out", str(tmp_path)])
    assert run(args, stdin=io.StringIO(""), stdout=io.StringIO()) == 1
    assert "nope" in capsys.readouterr().err


def test_an_unreadable_answer_gets_a_notice_and_keeps_the_round(world, tmp_path):
    target = world.targets[3]
    count, background = oracle_answers(world, target, SHAPES_TEMPLATE_QUESTIONS[:2])
    # Q1 (how many objects): :help, an unreadable answer, then the true one. Q2 (background): "blue water"
    # twice keeps it as typed.
    script = f":help\nblue water\n{count}\nblue water\nblue water\n"
    stdout = io.StringIO()
    result = play_session(world, questioner=ShapesTemplateQuestioner(), target=target, rounds=2,
                          out_dir=tmp_path, stdin=io.StringIO(script), stdout=stdout)
    text = stdout.getvalue()
    assert result.completed and result.dialog.answers == (count, "blue water")
    assert "to this question the world reads one of: one, two, three, four" in text  # :help on Q1
    assert text.count("the world can't read 'blue water'") == 2  # once per question, not on the confirming retype
    assert "(closest to yours: water)" in text  # the background question reads "water"
    assert len(result.ranks) == 3  # :help and the refused answer used up no round

    stdout = io.StringIO()  # "WOOD." is read as the world's own "wood"
    result = play_session(world, questioner=ShapesTemplateQuestioner(), target=target, rounds=2, out_dir=tmp_path,
                          stdin=io.StringIO(f"{count}\n{background.upper()}.\n"), stdout=stdout)
    assert result.dialog.answers == (count, background) and "can't read" not in stdout.getvalue()


def test_questioner_role_asks_an_unparsed_question_only_when_typed_again(world, tmp_path):
    target = world.targets[5]
    script = "is it blue water?\n:help\nwhat is the background?\nis it sunny?\nis it sunny?\n"
    stdout = io.StringIO()
    result = play_session(world, role="questioner", target=target, rounds=2, out_dir=tmp_path,
                          stdin=io.StringIO(script), stdout=stdout)
    truth = oracle_answers(world, target, ["what is the background?"])[0]
    assert result.dialog.turns == (("what is the background?", truth), ("is it sunny?", "i don't know"))
    assert stdout.getvalue().count("the world does not understand this question") == 2
    assert "examples this world understands" in stdout.getvalue() and result.completed


def test_rounds_are_played_by_the_core(world, tmp_path, monkeypatch):
    from chatir_env.core import EpisodeBatch

    calls = []
    step = EpisodeBatch.step
    monkeypatch.setattr(EpisodeBatch, "step", lambda self, *a, **kw: calls.append(a) or step(self, *a, **kw))
    target = world.targets[3]
    answers = oracle_answers(world, target, SHAPES_TEMPLATE_QUESTIONS[:3])
    result = play_session(world, questioner=ShapesTemplateQuestioner(), target=target, rounds=3, out_dir=tmp_path,
                          stdin=io.StringIO("".join(a + "\n" for a in answers)), stdout=io.StringIO())
    assert [c[0] for c in calls] == [[q] for q in SHAPES_TEMPLATE_QUESTIONS[:3]]
    # The ranks the core kept are the ones a plain env reports for the same dialog.
    import gymnasium as gym

    env = gym.make("ChatIR/ShapesOracle-v0", world=world)
    _, info = env.reset(options={"target": target})
    ranks = [info["rank"] + 1]
    for q in SHAPES_TEMPLATE_QUESTIONS[:3]:
        ranks.append(env.step(q)[-1]["rank"] + 1)
    assert result.ranks == ranks


def test_target_and_candidates_are_enlarged_with_sharp_pixels(world, tmp_path):
    target = world.targets[3]
    play_session(world, questioner=ShapesTemplateQuestioner(), target=target, rounds=1, out_dir=tmp_path,
                 stdin=io.StringIO(""), stdout=io.StringIO())
    source = world.image(target).convert("RGB")
    assert source.size == (36, 36)
    shown = Image.open(tmp_path / "target.png").convert("RGB")
    assert shown.size == (144, 144)  # 36 px x 4, the smallest whole factor reaching 144
    for x, y in [(0, 0), (17, 9), (35, 35), (20, 30)]:
        block = {shown.getpixel((4 * x + i, 4 * y + j)) for i in range(4) for j in range(4)}
        assert block == {source.getpixel((x, y))}  # nearest-neighbour: each source pixel a uniform 4 x 4 block
    sheet = contact_sheet([source], ["x"], cell=160)
    offset = 4 + (160 - 144) // 2  # the sheet's padding, then the 144 px image centred in its 160 px cell
    for x, y in [(17, 9), (0, 35)]:
        assert sheet.getpixel((offset + 4 * x, offset + 4 * y)) == source.getpixel((x, y))
