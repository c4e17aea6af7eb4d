"""LLMQuestioner (local OpenAI-compatible server, tiny HF models), output cleaning, ReplayQuestioner,
and the custom-questioner example."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from chatir_env.agents import QUESTIONERS, make_questioner
from chatir_env.agents.llm import (
    FEW_SHOT,
    GENERIC_QUESTIONS,
    HFBackend,
    LLMBackendError,
    LLMQuestioner,
    LLMQuestionError,
    build_messages,
    clean_generated_question,
    parse_question_list,
    render_plain,
)
from chatir_env.agents.replay import ReplayQuestioner, sanitize_question
from chatir_env.dialog import Dialog
from chatir_env.spaces import dialog_observation

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


def obs(dialog: Dialog, max_rounds: int = 10) -> dict:
    return dialog_observation(dialog, max_rounds, 300)


# --- a local OpenAI-compatible chat completions server -------------------------------------------


class ChatServer:
    """``POST /v1/chat/completions`` on 127.0.0.1. ``script`` holds behaviours for the next requests
    ("ok", "slow", "malformed", "notjson", "500", "401", "empty"); when it is empty, "ok". "ok" replies
    with ``reply(body)``."""

    def __init__(self):
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.reply = lambda body: "Question: what is on the table?\nAnswer: a cup"
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    outer.headers.append(dict(self.headers))
                    behaviour = outer.script.pop(0) if outer.script else "ok"
                try:
                    if self.path != "/v1/chat/completions":
                        return self._send(404, {"error": {"message": "no such route"}})
                    if behaviour == "slow":
                        time.sleep(1.5)
                        return self._send(200, self._completion("is it late?"))
                    if behaviour == "malformed":
                        return self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
                    if behaviour == "notjson":
                        return self._send(200, b"<html>gateway</html>")
                    if behaviour == "500":
                        return self._send(500, {"error": {"message": "overloaded"}})
                    if behaviour == "401":
                        return self._send(401, {"error": {"message": "bad key"}})
                    if behaviour == "empty":
                        return self._send(200, self._completion(""))
                    return self._send(200, self._completion(outer.reply(body)))
                except (BrokenPipeError, ConnectionResetError):
                    pass

            @staticmethod
            def _completion(text):
                return {"id": "c", "object": "chat.completion", "model": "tiny",
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}

            def _send(self, status, payload):
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("CHATIR_TEST_KEY", "sk-test")
    return "CHATIR_TEST_KEY"


def openai_q(server, key, **kwargs):
    backend_args = {"backoff": 0.0, **kwargs.pop("backend_args", {})}
    return LLMQuestioner("openai", "tiny-model", base_url=server.base_url, api_key_env=key, backend_args=backend_args, **kwargs)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_openai_request_prompt_and_cleaning(server, key):
    q = openai_q(server, key, retries=0)
    d = Dialog("a plate of food on a table", (("is it a pizza?", "no"),))
    q.reset([d.caption])
    assert q.ask([obs(d)]) == ["what is on the table?"]  # label and made-up answer dropped
    body, headers = server.requests[0], server.headers[0]
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "tiny-model" and body["temperature"] == 0.0
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system"] + ["user", "assistant"] * len(FEW_SHOT) + ["user"]
    last = body["messages"][-1]["content"]
    assert "Caption: a plate of food on a table" in last and "Q1: is it a pizza? A1: no" in last
    assert q.stats["fallbacks"] == 0 and q.stats["questions"] == 1


def test_openai_retries_server_errors_then_succeeds(server, key):
    server.script = ["500", "notjson", "ok"]
    q = openai_q(server, key, retries=3)
    q.reset(["a cat"])
    assert q.ask([obs(Dialog("a cat"))]) == ["what is on the table?"]
    assert len(server.requests) == 3 and q.backend.calls == 3
    assert q.stats["backend_errors"] == 0 and q.stats["fallbacks"] == 0


def test_openai_timeout_falls_back_and_counts(server, key):
    server.script = ["slow", "slow"]
    q = openai_q(server, key, timeout=0.2, retries=1)
    d = Dialog("a dog", (("what is in the background?", "grass"),))
    q.reset([d.caption])
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="timed out"):
        out = q.ask([obs(d)])
    assert time.monotonic() - start < 1.5  # two 0.2 s timeouts, not the server's 1.5 s
    assert out == [GENERIC_QUESTIONS[1]]  # the first generic question not asked yet
    assert q.stats["backend_errors"] == 1 and q.stats["fallbacks"] == 1 and q.backend.calls == 2
    assert "timed out" in q.stats["last_error"]
    assert q.ask([obs(d)]) == ["what is on the table?"]  # the server is back: no lasting harm


def test_openai_malformed_reply_falls_back(server, key):
    server.script = ["malformed", "malformed"]
    q = openai_q(server, key, retries=1)
    q.reset(["a cat"])
    with pytest.warns(RuntimeWarning):
        assert q.ask([obs(Dialog("a cat"))]) == [GENERIC_QUESTIONS[0]]
    assert "malformed" in q.stats["last_error"] and "choices" in q.stats["last_error"]
    assert q.stats["fallbacks"] == 1 and len(server.requests) == 2


@pytest.mark.filterwarnings("ignore:LLMQuestioner. generation failed")
def test_endpoint_down_marks_backend_down_and_runner_keeps_going(key):
    from chatir_env.eval.runner import play_episodes
    from chatir_env.worlds import build_world

    q = LLMQuestioner("openai", "m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key_env=key,
                      retries=1, timeout=1.0, max_consecutive_failures=2, backend_args={"backoff": 0.0})
    world = build_world("shapes_oracle", corpus_size=500, num_targets=20)
    with pytest.warns(RuntimeWarning, match="considered down"):
        record = play_episodes(world, q, targets=world.targets[:4], max_rounds=3, progress=False)
    assert record.ranks.shape == (4, 4) and record.invalid_questions == 0
    assert q.stats["backend_down"] and q.backend.calls == 2 * 4 * 2  # two rounds x 4 episodes x (1 + 1 retry), then none
    assert q.stats["fallbacks"] == 12 and "cannot reach" in q.stats["last_error"]
    assert [d.questions for d in record.dialogs][0] == GENERIC_QUESTIONS[:3]


def test_on_error_raise_and_fatal_errors(server, key, monkeypatch):
    server.script = ["500"]
    q = openai_q(server, key, retries=0, on_error="raise")
    q.reset(["a cat"])
    with pytest.raises(LLMBackendError, match="HTTP 500"):
        q.ask([obs(Dialog("a cat"))])
    server.script = ["401"]
    q = openai_q(server, key, retries=3)
    q.reset(["a cat"])
    with pytest.raises(LLMBackendError, match="HTTP 401") as err:
        q.ask([obs(Dialog("a cat"))])
    assert err.value.fatal and len(server.requests) == 2  # no retry on 401
    monkeypatch.delenv(key)
    with pytest.raises(LLMBackendError, match="CHATIR_TEST_KEY"):
        openai_q(server, key)


def test_repeats_are_retried_with_sampling_then_fall_back(server, key):
    server.reply = lambda body: "What color is the car?"
    q = openai_q(server, key, max_attempts=2)
    d = Dialog("a car", (("what color is the car?", "red"),))
    q.reset([d.caption])
    assert q.ask([obs(d)]) == [GENERIC_QUESTIONS[0]]
    assert q.stats["rejected_repeat"] == 2 and q.stats["retries"] == 1 and q.stats["fallbacks"] == 1
    retry = server.requests[1]
    assert retry["temperature"] == 0.8 and "Do not ask any of these again: What color is the car?" in retry["messages"][-1]["content"]
    # fallback="pass" asks nothing; fallback="error" raises
    q = openai_q(server, key, max_attempts=1, fallback="pass")
    q.reset([d.caption])
    assert q.ask([obs(d)]) == [None] and q.stats["passes"] == 1
    server.script = ["empty"]
    q = openai_q(server, key, max_attempts=1, fallback="error")
    q.reset(["a car"])
    with pytest.raises(LLMQuestionError):
        q.ask([obs(Dialog("a car"))])


def test_unanswered_mode_lists_questions_from_the_caption(server, key):
    server.reply = lambda body: (
        "1. What color is the car?\n2. Is it parked?\n3. what color is the car?" if "one question per line" in body["messages"][0]["content"]
        else "Is there a driver?"
    )
    q = openai_q(server, key, mode="unanswered")
    q.reset(["a car on a street"])
    d = Dialog("a car on a street")
    asked = []
    for answer in ("red", "yes", "no"):
        question = q.ask([obs(d, 3)])[0]
        asked.append(question)
        d = d.with_turn(question, answer)
    assert asked == ["What color is the car?", "Is it parked?", "Is there a driver?"]  # the duplicate dropped
    assert "one question per line" in server.requests[0]["messages"][0]["content"] and "3 different" in server.requests[0]["messages"][0]["content"]
    seq = server.requests[1]["messages"][-1]["content"]
    assert "Q2: Is it parked?" in seq and "red" not in seq and "yes" not in seq  # answers never shown


@pytest.mark.parametrize("raw, expected", [
    ("Q: is it sunny?", "is it sunny?"),
    ("Sure, here is a question: what color is the car? Answer: red", "what color is the car?"),
    (' "What color is the car?" ', "What color is the car?"),
    ("what time is it: morning or evening?", "what time is it: morning or evening?"),
    ("1. is it sunny?\n2. is it big?", "is it sunny?"),
    ("The caption mentions a man. Is he old? I think so", "Is he old?"),
    ("is it\nsunny?", "is it sunny?"),
    ("what color is the dog\nAnswer: brown", "what color is the dog?"),
    ("- **Is there a dog?**", "Is there a dog?"),
    ("Next question: where is the cat?", "where is the cat?"),
    ("yes", None), ("", None), ("???", None), ("The man is riding.", None), (None, None), ("x" * 300 + "?", None),
])
def test_output_cleaning(raw, expected):
    assert clean_generated_question(raw) == expected


def test_parse_question_list():
    assert parse_question_list("Here are questions:\n1. is it sunny?\n2) how many dogs are there? 3. where is the cat?\n") == [
        "is it sunny?", "how many dogs are there?", "where is the cat?"]


def test_prompt_rendering_without_template():
    text = render_plain(build_messages(Dialog("a red car", (("is it new?", "yes"),))))
    assert text.endswith("Caption: a red car\nDialog so far:\nQ1: is it new? A1: yes\nNext question:")
    assert f"Next question: {FEW_SHOT[0][2]}" in text


# --- tiny local HF models ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A WordLevel tokenizer trained on the prompt's own words, a GPT-2 trained for a few steps to
    answer every prompt with "what color is the car ?", and a random T5; both saved to a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    prompts = [render_plain(build_messages(Dialog("a red circle", turns)))
               for turns in [(), (("is it sunny?", "yes"),)]]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.train_from_iterator(prompts + ["what color is the car ? the the"], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    root = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=0))
    opt = torch.optim.Adam(gpt.parameters(), lr=3e-3)
    batch = [(fast(p + " what color is the car ?<eos>", return_tensors="pt").input_ids, len(fast(p).input_ids)) for p in prompts]
    for _ in range(60):
        loss = 0
        for ids, plen in batch:
            labels = ids.clone()
            labels[:, :plen] = -100
            loss = loss + gpt(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    gpt.save_pretrained(root / "gpt")
    fast.save_pretrained(root / "gpt")
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(fast), d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=2,
                                             decoder_start_token_id=0, pad_token_id=0, eos_token_id=2))
    t5.save_pretrained(root / "t5")
    fast.save_pretrained(root / "t5")
    return root


def test_hf_causal_from_directory_batched_and_cleaned(tiny_hf):
    q = LLMQuestioner("hf", str(tiny_hf / "gpt"), max_new_tokens=8)
    assert not q.backend.encoder_decoder and q.backend.tokenizer.padding_side == "left"
    d0 = Dialog("a blue square")
    d1 = Dialog("a red circle", (("is it sunny?", "yes"), ("is it big?", "no")))
    convs = [build_messages(d0), build_messages(d1)]
    together = q.backend.generate(convs)
    alone = [q.backend.generate([c])[0] for c in convs]
    assert together == alone  # left padding does not change greedy outputs
    q.reset([d0.caption, d1.caption])
    assert q.ask([obs(d0), obs(d1)]) == ["what color is the car?"] * 2
    # Round 2 with that question asked: the repeat is rejected, never returned.
    d2 = d0.with_turn("what color is the car?", "blue")
    out = q.ask([obs(d2)])[0]
    assert out.endswith("?") and out.lower() != "what color is the car?"
    assert q.stats["rejected_repeat"] >= 1


def test_hf_seq2seq_and_chat_template(tiny_hf):
    from transformers import AutoTokenizer

    q = LLMQuestioner("hf", str(tiny_hf / "t5"), max_new_tokens=6, max_attempts=2)
    assert q.backend.encoder_decoder
    q.reset(["a red circle"])
    out = q.ask([obs(Dialog("a red circle"))])
    assert isinstance(out[0], str) and out[0].endswith("?")  # a random model: cleaned or the fallback
    assert q.stats["generated"] >= 1 and q.stats["backend_errors"] == 0
    tok = AutoTokenizer.from_pretrained(str(tiny_hf / "gpt"))
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    backend = HFBackend(str(tiny_hf / "gpt"), tok, max_new_tokens=4)
    assert backend.use_template
    text = backend.render(build_messages(Dialog("a red circle")))
    assert text.startswith("<system> ") and text.endswith("<assistant>") and "Caption: a red circle" in text
    assert len(backend.generate([build_messages(Dialog("a red circle"))])) == 1
    with pytest.raises(ValueError, match="chat template"):
        HFBackend(str(tiny_hf / "t5"), chat_template=True)


def test_callable_backend_and_registry():
    q = make_questioner("llm", backend=lambda messages: "Is it sunny?")
    q.reset(["a beach"])
    assert q.ask([obs(Dialog("a beach"))]) == ["Is it sunny?"]
    assert {"llm", "replay", "generic"} <= set(QUESTIONERS)
    assert make_questioner("generic").ask([obs(Dialog("x"))]) == [GENERIC_QUESTIONS[0]]


# --- ReplayQuestioner ----------------------------------------------------------------------------

RECORDS = [
    ("img/1.jpg", Dialog("A man riding a horse.", (("is it sunny?", "yes"), ("what color is the horse?\nAnswer:", "brown")))),
    ("img/2.jpg", Dialog("a dog on a couch", (("is the dog big?", "no"),))),
    ("img/3.jpg", Dialog("a dog on a couch", (("is the couch red?", "yes"),))),
]


def test_replay_lookup_rules():
    q = ReplayQuestioner(records=RECORDS)
    q.reset(["a man riding a horse"])  # normalised caption match
    assert q.ask([obs(Dialog("x"))]) == ["is it sunny?"]
    o = obs(Dialog("x"))
    o["round_index"] = 1  # the runner's round count wins over the dialog's
    assert q.ask([o]) == ["what color is the horse? Answer:"]  # sanitized: the line break became a space
    o["round_index"] = 2
    assert q.ask([o]) == [None]  # past the recorded dialog: pass
    with pytest.raises(KeyError, match="matches 2 dialogs"):
        q.reset(["a dog on a couch"])
    q.reset(["a dog on a couch"], pools=[["is the couch red?", "is it sunny?"]])  # the pool disambiguates
    assert q.ask([obs(Dialog("x"))]) == ["is the couch red?"]
    q.reset(["whatever"], targets=["img/2.jpg"])
    assert q.ask([obs(Dialog("x"))]) == ["is the dog big?"]
    q = ReplayQuestioner(records=RECORDS, target_map={"a dog on a couch": "img/3.jpg"}, questions="exact")
    q.reset(["a dog on a couch", "A man riding a horse."])
    o = obs(Dialog("x"))
    o["round_index"] = 1
    assert q.ask([obs(Dialog("x")), o]) == ["is the couch red?", "what color is the horse?\nAnswer:"]
    with pytest.raises(KeyError, match="no recorded dialog"):
        q.reset(["a cat"])
    q = ReplayQuestioner(records=RECORDS, on_unknown="pass", questions="clean")
    q.reset(["a cat", "A man riding a horse."])
    o["round_index"] = 1
    assert q.ask([obs(Dialog("x")), o]) == [None, "what color is the horse?"] and q.unknown_targets == 1


from conftest import CHATIR_DATA as DATA  # noqa: E402
from conftest import needs_chatir_data as needs_data  # noqa: E402

FILES = ["VisDial_v1.0_queries_val.json", "Human_BLIP2.json", "ChatGPT_BLIP2.json",
         "FLAN_ALPACA_XXL_BLIP2.json", "Unanswered_ChatGPT_BLIP2.json"]


@needs_data
@pytest.mark.parametrize("name", FILES)
def test_replay_reproduces_recorded_questions(name):
    from chatir_env.data.chatir_files import load_dialog_file

    records = load_dialog_file(DATA / name)
    captions = [d.caption for _, d in records]
    exact = ReplayQuestioner(name, data_dir=DATA, questions="exact")
    sanitized = ReplayQuestioner(name, data_dir=DATA)
    exact.reset(captions)
    sanitized.reset(captions)
    rounds = max(d.round for _, d in records)
    for r in range(rounds):
        observations = [{**obs(Dialog("")), "round_index": r} for _ in records]
        want = [d.questions[r] if r < d.round else None for _, d in records]
        assert exact.ask(observations) == want
        assert sanitized.ask(observations) == [None if w is None else sanitize_question(w) for w in want]


@needs_data
def test_replay_with_recorded_answers_rebuilds_official_dialog_text():
    """Human questions replayed against the recorded BLIP2 answers give the official query strings."""
    from chatir_env.answerers.recorded import RecordedAnswerer
    from chatir_env.data.chatir_files import load_dialog_file

    name = "Human_BLIP2.json"
    raw = json.loads((DATA / name).read_text())[:300]
    records = load_dialog_file(DATA / name)[:300]
    answerer = RecordedAnswerer({name: records})
    q = ReplayQuestioner("human_blip2", data_dir=DATA, questions="exact")
    q.reset([d.caption for _, d in records])
    dialogs = [Dialog(d.caption) for _, d in records]
    targets = [t for t, _ in records]
    for r in range(10):
        questions = q.ask([{**obs(d), "round_index": r} for d in dialogs])
        answers = answerer.answer(targets, dialogs, questions)
        dialogs = [d.with_turn(qq, a) for d, qq, a in zip(dialogs, questions, answers)]
        for d, entry in zip(dialogs, raw):
            assert d.text() == ", ".join(entry["dialog"][: r + 2])


# --- the custom questioner example ---------------------------------------------------------------


def load_example():
    path = ROOT / "examples" / "custom_questioner.py"
    spec = importlib.util.spec_from_file_location("custom_questioner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_questioner_example_plays_and_beats_the_caption():
    import yaml

    from chatir_env.eval.runner import play_episodes
    from chatir_env.metrics import hits_at_k
    from chatir_env.worlds import build_world

    module = load_example()
    world = build_world("shapes_oracle", corpus_size=2000, num_targets=100)
    record = play_episodes(world, module.KeywordShapesQuestioner(), max_rounds=10, progress=False)
    assert record.ranks.shape == (11, 100) and record.invalid_questions == 0
    assert record.repeated_question_rate == 0.0
    hits = hits_at_k(record.ranks)
    assert hits[10] > hits[0] and record.ranks[5].mean() < record.ranks[0].mean()
    asked = {q for d in record.dialogs for q in d.questions}
    assert asked <= set(world.question_pool(world.targets[0]))  # only questions the oracle understands
    config = yaml.safe_load((ROOT / "examples" / "custom_benchmark.yaml").read_text())
    specs = [q["questioner"] for q in config["questioners"]]
    assert "custom_questioner:KeywordShapesQuestioner" in specs
    assert config["worlds"][0]["world"] == "shapes_oracle" and config["max_rounds"] == 10
    assert set(config["worlds"][0]) <= {"name", "world", "args"}
    for entry in config["questioners"]:
        assert set(entry) <= {"name", "questioner", "args"}
        if ":" not in entry["questioner"]:
            make_questioner(entry["questioner"], **entry.get("args", {}))
