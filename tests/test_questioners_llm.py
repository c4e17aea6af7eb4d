"""LLMQuestioner (local OpenAI-compatible server, tiny HF models), output cleaning, ReplayQuestioner,
and the custom-questioner example."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
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


# --- a local OpenAI-compatible chat completions server with scripted faults ---------------------

DRIP_BYTES = 40  # a dripped reply lasts DRIP_BYTES * 0.25 s = 10 s unless the client cuts it


class ChatServer:
    """``POST /v1/chat/completions`` on 127.0.0.1, one thread per connection.

    Each request's behaviour is the next entry of ``script`` (arrival order), else ``behave(body)``
    (default "ok"): "ok" (a completion with ``reply(body)``), "truncated" (Content-Length larger than
    the body, then the connection closes), "badstatus" (a status line that is not HTTP), "drip" (the
    completion one byte every 0.25 s), "500", "429:<Retry-After>", "401", "malformed" (no choices),
    "notjson", "empty", "refusal" (a polite text refusal), "refusal_field" (content null, ``refusal``
    set). The server answers at most ``max_requests`` requests (later ones are dropped unanswered) and
    shuts itself down after ``lifetime`` seconds, so a test that hangs cannot keep it alive.
    """

    def __init__(self, max_requests: int = 64, lifetime: float = 30.0):
        self.script: list[str] = []
        self.behave = lambda body: "ok"
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.behaviours: list[str] = []
        self.reply = lambda body: "Question: what is on the table?\nAnswer: a cup"
        self.max_requests = max_requests
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    if len(outer.requests) >= outer.max_requests:
                        self.close_connection = True
                        return
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    behaviour = outer.script.pop(0) if outer.script else outer.behave(body)
                    outer.behaviours.append(behaviour)
                try:
                    self._act(behaviour, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a deadline): nothing left to send

            def _act(self, behaviour, body):
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "no such route"}})
                if behaviour == "truncated":
                    raw = json.dumps(self._completion("is it late?")).encode()
                    self._head(200, len(raw))
                    self.wfile.write(raw[: len(raw) // 2])
                    self.close_connection = True
                    return None
                if behaviour == "badstatus":
                    self.wfile.write(b"HTTP/1.1 two-hundred fine\r\n\r\n")
                    self.close_connection = True
                    return None
                if behaviour == "drip":
                    raw = json.dumps(self._completion("is it late?")).encode()
                    self._head(200, len(raw))
                    for byte in raw[:DRIP_BYTES]:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.25)
                    self.close_connection = True
                    return None
                if behaviour.startswith("429:"):
                    return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": behaviour[4:]})
                if behaviour == "500":
                    return self._send(500, {"error": {"message": "overloaded"}})
                if behaviour == "401":
                    return self._send(401, {"error": {"message": "bad key"}})
                if behaviour == "malformed":
                    return self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "choices": []})
                if behaviour == "notjson":
                    return self._send(200, b"<html>gateway</html>")
                if behaviour == "empty":
                    return self._send(200, self._completion(""))
                if behaviour == "refusal":
                    return self._send(200, self._completion("I'm sorry, but I can't help with that."))
                if behaviour == "refusal_field":
                    completion = self._completion(None)
                    completion["choices"][0]["message"]["refusal"] = "I can't help with that."
                    return self._send(200, completion)
                assert behaviour == "ok", behaviour
                return self._send(200, self._completion(outer.reply(body)))

            @staticmethod
            def _completion(text):
                return {"id": "c", "object": "chat.completion", "created": 0, "model": "tiny",
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}

            def _head(self, status, length, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()

            def _send(self, status, payload, headers=None):
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self._head(status, len(raw), headers)
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.watchdog = threading.Timer(lifetime, self.server.shutdown)
        self.watchdog.daemon = True
        self.watchdog.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.watchdog.cancel()
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
    return LLMQuestioner("openai", "tiny-model", base_url=server.base_url, api_key_env=key, backend_args=backend_args,
                         **kwargs)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def caption_of(body: dict) -> str:
    """The episode's caption, read from the request's last user message."""
    return body["messages"][-1]["content"].split("\n")[0].removeprefix("Caption: ")


def round_of(body: dict) -> int:
    """The episode's round: the questions listed in the request's last user message."""
    return sum(line.startswith("Q") for line in body["messages"][-1]["content"].split("\n"))


def scenes(n: int) -> list[Dialog]:
    return [Dialog(f"scene {i}") for i in range(n)]


def test_openai_request_prompt_and_cleaning(server, key):
    q = openai_q(server, key, retries=0)
    d = Dialog("a plate of food on a table", (("is it a pizza?", "no"),))
    q.reset([d.caption])
    assert q.ask([obs(d)]) == ["what is on the table?"]  # label and made-up answer dropped
    body, headers = server.requests[0], server.headers[0]
    assert headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "tiny-model" and body["temperature"] == 0.0 and body["max_tokens"] == 48
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system"] + ["user", "assistant"] * len(FEW_SHOT) + ["user"]
    last = body["messages"][-1]["content"]
    assert "Caption: a plate of food on a table" in last and "Q1: is it a pizza? A1: no" in last
    assert q.stats["fallbacks"] == 0 and q.stats["questions"] == 1 and q.stats["backend_requests"] == 1


def test_openai_retries_server_errors_then_succeeds(server, key):
    server.script = ["500", "notjson", "truncated", "badstatus", "ok"]
    q = openai_q(server, key, retries=4)
    q.reset(["a cat"])
    assert q.ask([obs(Dialog("a cat"))]) == ["what is on the table?"]
    assert len(server.requests) == 5 and q.backend.calls == 5
    assert q.stats["backend_errors"] == 0 and q.stats["fallbacks"] == 0 and q.stats["backend_retries"] == 4


FAULTS = ["truncated", "badstatus", "500", "429:0", "malformed", "notjson"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.filterwarnings("ignore:LLMQuestioner. generation failed")
def test_openai_fault_costs_only_its_own_question(server, key, fault):
    """Scene 1's request always meets the fault: after its retry it falls back; scenes 0 and 2 keep their replies."""
    server.behave = lambda body: fault if caption_of(body) == "scene 1" else "ok"
    server.reply = lambda body: f"what is in {caption_of(body)}?"
    q = openai_q(server, key, retries=1)
    dialogs = scenes(3)
    q.reset([d.caption for d in dialogs])
    assert q.ask([obs(d) for d in dialogs]) == ["what is in scene 0?", GENERIC_QUESTIONS[0], "what is in scene 2?"]
    assert sorted(caption_of(b) for b in server.requests) == ["scene 0", "scene 1", "scene 1", "scene 2"]
    assert q.stats["backend_errors"] == 1 and q.stats["fallbacks"] == 1 and q.stats["backend_retries"] == 1
    assert q.stats["questions"] == 3 and not q.stats["backend_down"]
    expected_words = {"truncated": "broke off", "badstatus": "broke off", "500": "HTTP 500", "429:0": "HTTP 429",
                      "malformed": "malformed", "notjson": "malformed"}[fault]
    assert expected_words in q.stats["last_error"]


@pytest.mark.filterwarnings("ignore:LLMQuestioner. generation failed")
def test_openai_slow_drip_is_cut_at_the_deadline(server, key):
    """A reply dripped a byte every 0.25 s (10 s in all) is cut at the 0.5 s wall-clock deadline; each read is quick."""
    server.behave = lambda body: "drip" if caption_of(body) == "scene 0" else "ok"
    q = openai_q(server, key, timeout=0.5, retries=0)
    dialogs = scenes(2)
    q.reset([d.caption for d in dialogs])
    start = time.monotonic()
    out = q.ask([obs(d) for d in dialogs])
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 0.5 + 1.5  # the deadline plus slack for a loaded machine, far from the 10 s drip
    assert out == [GENERIC_QUESTIONS[0], "what is on the table?"]
    assert q.stats["backend_timeouts"] == 1 and q.stats["backend_errors"] == 1 and "timed out" in q.stats["last_error"]


def test_openai_backend_works_inside_a_running_event_loop(server, key):
    """A caller that already runs an event loop (a notebook, an async app) still gets its replies."""
    import asyncio

    q = openai_q(server, key, retries=0)

    async def caller():
        return q.backend.generate([build_messages(Dialog("a cat"))] * 2)

    assert asyncio.run(caller()) == ["Question: what is on the table?\nAnswer: a cup"] * 2
    assert len(server.requests) == 2


def test_openai_429_retry_after_is_honoured_and_bounded(server, key):
    delays: list[float] = []

    async def record(seconds):
        delays.append(seconds)

    server.script = ["429:2", "ok", "429:3600", "ok", "429:Wed, 21 Oct 2015 07:28:00 GMT", "ok"]
    q = openai_q(server, key, retries=1, backend_args={"max_backoff": 5.0, "sleep": record})
    q.reset(["a cat"])
    for _ in range(3):
        assert q.ask([obs(Dialog("a cat"))]) == ["what is on the table?"]
    # 2 s as asked; an hour capped at max_backoff; a date in the past means now. backoff=0 would give 0 s.
    assert delays == [2.0, 5.0, 0.0]
    assert q.stats["backend_rate_limited"] == 3 and q.stats["backend_retries"] == 3 and q.stats["fallbacks"] == 0


def test_openai_retry_after_waits_for_real(server, key):
    server.script = ["429:1", "ok"]
    q = openai_q(server, key, retries=1)
    q.reset(["a cat"])
    start = time.monotonic()
    assert q.ask([obs(Dialog("a cat"))]) == ["what is on the table?"]
    assert time.monotonic() - start >= 1.0


@pytest.mark.parametrize("refusal", ["refusal", "refusal_field"])
def test_openai_refusal_is_retried_for_its_episode_then_falls_back(server, key, refusal):
    server.behave = lambda body: refusal if caption_of(body) == "scene 1" else "ok"
    server.reply = lambda body: f"what is in {caption_of(body)}?"
    q = openai_q(server, key, max_attempts=3)
    dialogs = scenes(3)
    q.reset([d.caption for d in dialogs])
    assert q.ask([obs(d) for d in dialogs]) == ["what is in scene 0?", GENERIC_QUESTIONS[0], "what is in scene 2?"]
    assert sorted(caption_of(b) for b in server.requests) == ["scene 0"] + ["scene 1"] * 3 + ["scene 2"]
    assert [b["temperature"] for b in server.requests if caption_of(b) == "scene 1"] == [0.0, 0.8, 0.8]
    assert q.stats["rejected_empty"] == 3 and q.stats["retries"] == 2 and q.stats["fallbacks"] == 1
    assert q.stats["backend_errors"] == 0  # the endpoint answered: a refusal is no backend failure


@pytest.mark.filterwarnings("ignore:LLMQuestioner. generation failed")
def test_openai_one_bad_reply_in_eight_costs_one_question_per_round(server, key):
    """Three rounds of 8 episodes; in round r, scene r's every attempt meets a different fault."""
    faults = ["truncated", "badstatus", "500"]
    server.behave = lambda body: faults[round_of(body)] if caption_of(body) == f"scene {round_of(body)}" else "ok"
    server.reply = lambda body: f"what is in {caption_of(body)} at round {round_of(body)}?"
    q = openai_q(server, key, retries=1)  # the default max_consecutive_failures
    dialogs = scenes(8)
    q.reset([d.caption for d in dialogs])
    for r in range(3):
        out = q.ask([obs(d) for d in dialogs])
        expected = [f"what is in scene {i} at round {r}?" for i in range(8)]
        expected[r] = GENERIC_QUESTIONS[0]  # scene r has asked only LLM questions so far
        assert out == expected
        dialogs = [d.with_turn(question, "yes") for d, question in zip(dialogs, out)]
    assert len(server.requests) == 3 * (7 + 2)
    assert q.stats["fallbacks"] == 3 and q.stats["backend_errors"] == 3 and not q.stats["backend_down"]
    assert q.stats["questions"] == 24 and q.stats["generated"] == 21


@pytest.mark.filterwarnings("ignore:LLMQuestioner. generation failed")
def test_backend_marked_down_after_consecutive_failed_requests_only(server, key):
    """max_consecutive_failures=3, batches of 2 in request order: FF | FS (reset) | FF | FF -> down after 4 in a row."""
    plan = {0: ("500", "500"), 1: ("500", "ok"), 2: ("500", "500"), 3: ("500", "500")}
    server.behave = lambda body: plan[round_of(body)][int(caption_of(body) == "scene 1")]
    server.reply = lambda body: f"what is in {caption_of(body)} at round {round_of(body)}?"
    q = openai_q(server, key, retries=0, max_consecutive_failures=3)
    dialogs = scenes(2)
    q.reset([d.caption for d in dialogs])
    rows, down = [], []
    with pytest.warns(RuntimeWarning, match="4 failed requests in a row"):
        for _ in range(5):
            out = q.ask([obs(d) for d in dialogs])
            rows.append(out)
            down.append(q.stats["backend_down"])
            dialogs = [d.with_turn(question, "no") for d, question in zip(dialogs, out)]
    assert down == [False, False, False, True, True]
    assert rows[1][1] == "what is in scene 1 at round 1?"
    assert len(server.requests) == 8  # four rounds of 2; none once down
    assert q.stats["backend_errors"] == 7 and q.stats["fallbacks"] == 9 and q.stats["failures_in_row"] == 4


@pytest.mark.filterwarnings("ignore:LLMQuestioner. generation failed")
def test_endpoint_down_marks_backend_down_and_runner_keeps_going(key):
    from chatir_env.eval.runner import play_episodes
    from chatir_env.worlds import build_world

    q = LLMQuestioner("openai", "m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key_env=key,
                      retries=1, timeout=1.0, backend_args={"backoff": 0.0})
    world = build_world("shapes_oracle", corpus_size=500, num_targets=20)
    with pytest.warns(RuntimeWarning, match="considered down"):
        record = play_episodes(world, q, targets=world.targets[:4], max_rounds=3, progress=False)
    assert record.ranks.shape == (4, 4) and record.invalid_questions == 0
    # 4 failed requests after round 1, 8 after round 2 (>= the default 5): down, no call in round 3.
    assert q.stats["backend_down"] and q.backend.calls == 2 * 4 * 2  # two rounds x 4 episodes x (1 + 1 retry)
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


def test_module_imports_without_openai_and_names_the_extra():
    """The HF backend needs no openai: the module imports without it; the endpoint backend says what to install."""
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "from chatir_env.agents.llm import LLMQuestioner\n"
        "from chatir_env.dialog import Dialog\n"
        "from chatir_env.spaces import dialog_observation\n"
        "q = LLMQuestioner(lambda messages: 'is it red?')\n"
        "print(q.ask([dialog_observation(Dialog('x'), 10, 300)]))\n"
        "try:\n"
        "    LLMQuestioner('openai', 'm', api_key_env=None)\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().split("\n")
    assert lines[0] == "['is it red?']"
    assert "pip install 'chatir-env[llm]'" in lines[1]


def test_repeats_are_retried_with_sampling_then_fall_back(server, key):
    server.reply = lambda body: "What color is the car?"
    q = openai_q(server, key, max_attempts=2)
    d = Dialog("a car", (("what color is the car?", "red"),))
    q.reset([d.caption])
    assert q.ask([obs(d)]) == [GENERIC_QUESTIONS[0]]
    assert q.stats["rejected_repeat"] == 2 and q.stats["retries"] == 1 and q.stats["fallbacks"] == 1
    retry = server.requests[1]
    assert retry["temperature"] == 0.8
    assert "Do not ask any of these again: What color is the car?" in retry["messages"][-1]["content"]
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
        "1. What color is the car?\n2. Is it parked?\n3. what color is the car?"
        if "one question per line" in body["messages"][0]["content"]
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
    system = server.requests[0]["messages"][0]["content"]
    assert "one question per line" in system and "3 different" in system
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


GPT_QUESTION = "what color is the car ?"
T5_QUESTION = "how many shapes are there ?"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A WordLevel tokenizer trained on the prompt's own words, a GPT-2 trained for a few steps to
    answer every prompt with "what color is the car ?", and a T5 trained to answer the same prompts
    with "how many shapes are there ?"; both saved to a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    prompts = [render_plain(build_messages(Dialog("a red circle", turns)))
               for turns in [(), (("is it sunny?", "yes"),)]]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"])
    tok.train_from_iterator(prompts + [f"{GPT_QUESTION} {T5_QUESTION} the the"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    root = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=0))
    opt = torch.optim.Adam(gpt.parameters(), lr=3e-3)
    batch = [(fast(p + f" {GPT_QUESTION}<eos>", return_tensors="pt").input_ids, len(fast(p).input_ids)) for p in prompts]
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
    opt = torch.optim.Adam(t5.parameters(), lr=3e-3)
    labels = fast(T5_QUESTION + "<eos>", return_tensors="pt").input_ids
    inputs = [fast(p, return_tensors="pt").input_ids for p in prompts]
    for _ in range(60):
        loss = sum(t5(input_ids=ids, labels=labels).loss for ids in inputs)
        opt.zero_grad()
        loss.backward()
        opt.step()
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

    # The T5 was trained to answer both prompts with T5_QUESTION: a seq2seq path that loads the wrong class,
    # pads on the wrong side, cuts the decoder output as if it held the prompt, or decodes badly returns
    # something else, and with one attempt a rejected reply becomes a fallback question.
    q = LLMQuestioner("hf", str(tiny_hf / "t5"), max_new_tokens=8, max_attempts=1)
    assert q.backend.encoder_decoder and q.backend.tokenizer.padding_side == "right"
    d0 = Dialog("a red circle")
    d1 = Dialog("a red circle", (("is it sunny?", "yes"),))
    convs = [build_messages(d0), build_messages(d1)]
    # The decoder's clean-up joins " ?"; batched, the shorter prompt is padded.
    assert q.backend.generate(convs) == ["how many shapes are there?"] * 2
    assert q.backend.generate([convs[0]]) == ["how many shapes are there?"]
    q.reset([d0.caption, d1.caption])
    assert q.ask([obs(d0), obs(d1)]) == ["how many shapes are there?"] * 2
    assert q.stats["generated"] == 2 and q.stats["fallbacks"] == 0 and q.stats["rejected_empty"] == 0
    tok = AutoTokenizer.from_pretrained(str(tiny_hf / "gpt"))
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
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
