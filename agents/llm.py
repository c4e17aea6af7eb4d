"""A prompted LLM questioner: ChatIR's question generator G, on a local HF model or a chat endpoint.

The protocol (ChatIR, Levy et al. 2023, Sec. 4): the generator sees the caption and the whole dialog
so far and writes one follow-up question; in the "unanswered" setting it never sees the answers, so
its questions depend on the caption alone. The prompt below is this project's own wording of that
protocol (the paper's exact text is not reproduced).

The prompt (``build_messages``)
-------------------------------
A chat: one system message (``INSTRUCTION``, or ``UNANSWERED_INSTRUCTION`` in unanswered mode), then
``FEW_SHOT`` worked examples as (user, assistant) pairs, then one user message for the episode::

    Caption: <the caption>
    Dialog so far:
    Q1: <question> A1: <answer>
    ...                                   ("(no questions yet)" at round 0)

The assistant's reply is the question. In unanswered mode the user message lists the questions
without answers ("Questions asked so far (answers not shown)"), and at the first round the model is
asked once per episode for the whole list (``LIST_INSTRUCTION``: "Write N questions ... one per
line"), which is then asked in order. A tokenizer with a chat template renders the chat with it (the
system message is folded into the first user turn for templates that refuse a system role);
otherwise the chat is rendered as plain text (``render_plain``): the system text, each user message,
each reply after "Next question:", ending with "Next question:" for the model to continue.

Output cleaning (``clean_generated_question``)
----------------------------------------------
One question, ending in "?": labels ("Question:", "Q3:", "1.", "- ", "Sure, here is a question:")
and quotes are dropped; the text is cut after its first "?", keeping the last sentence before it
(so "The caption says a man. Is he old?" gives "Is he old?"); whitespace and control characters
collapse to single spaces. Text without "?" is accepted only when its first line reads as a question
(it starts with what/is/how/...): it gets a "?". Anything else (empty, no letters, "yes", longer than
``max_question_chars``) is rejected.

A question that repeats one already asked in the dialog (case, punctuation and spacing ignored) is
rejected too. A rejected reply is retried up to ``max_attempts - 1`` times, sampling (temperature
``retry_temperature``) and telling the model which questions to avoid. After that, the episode gets
a **fallback question**: the first of ``GENERIC_QUESTIONS`` (VisDial-style questions that fit any
photo) not yet asked; ``fallback="pass"`` asks nothing instead (the runner counts a pass) and
``fallback="error"`` raises ``LLMQuestionError``. ``stats`` counts every case.

Backend failures (``on_error``)
-------------------------------
One bad reply costs at most its own question. Every episode of a batch is its own request: an endpoint
that times out, breaks off a reply (a truncated body, a bad status line, a reset), answers 5xx or 429,
or sends something that is not a chat completion is retried for that request alone (``retries``
times with exponential backoff, honouring ``Retry-After`` up to ``max_backoff``), within a wall-clock
deadline of ``timeout`` seconds per attempt; the replies that succeeded in the same batch are kept. A
request that still fails, or a local model that raises, gives that one episode a fallback question
(with ``on_error="fallback"``, the default), counted in ``stats["backend_errors"]`` and
``stats["fallbacks"]``, with one warning naming the error. A reply without a question (a refusal such
as "I can't help with that", or ``message.refusal`` with no content) is a rejected reply like any
other: retried up to ``max_attempts - 1`` times for that episode alone, then its fallback.

After ``max_consecutive_failures`` failed requests in a row (in batch order; any success resets the
run) the backend is considered down: no more calls are made and every later question is a fallback
(``stats["backend_down"]`` is True), so a dead endpoint costs a few timeouts, not one per round, and
the benchmark keeps its results. ``on_error="raise"`` raises ``LLMBackendError`` instead. A
configuration error (HTTP 401/403/404: a wrong key, model name or URL; an API-key variable that is
not set) raises at once when no call has succeeded yet, so it shows before any result exists.

``stats`` keys: ``questions``, ``generated`` (replies read), ``retries`` (re-asks after a rejected
reply), ``rejected_empty`` (no question in the reply), ``rejected_repeat``, ``fallbacks``, ``passes``,
``backend_errors`` (requests that failed for good), ``failures_in_row``, ``backend_down``,
``last_error``; with the endpoint backend also ``backend_requests`` (HTTP attempts),
``backend_retries``, ``backend_timeouts`` and ``backend_rate_limited`` (429 replies).

Backends
--------
* ``backend="hf"``: ``model`` is a local directory (or an already loaded model with ``tokenizer``);
  ``AutoModelForSeq2SeqLM`` for encoder-decoder configs, else ``AutoModelForCausalLM``; batched
  greedy decoding (left padding for decoder-only models), ``batch_size`` episodes per ``generate``.
* ``backend="openai"``: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM,
  llama.cpp, Ollama ...) through the official ``openai`` SDK, an optional extra
  (``pip install 'chatir-env[llm]'``; this module imports without it): ``base_url``, ``model``, the
  API key read from the environment variable named by ``api_key_env`` (``None``: a server that needs
  no key), ``timeout`` seconds of wall-clock deadline per attempt, ``retries``; in ``backend_args``
  ``concurrency`` (requests in flight), ``backoff``, ``max_backoff``, ``extra_body``
  (``OpenAIChatBackend``).
* any object with ``generate(conversations, sample=False) -> list[str | Exception]``, or a callable
  ``messages -> str``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import email.utils
import os
import random
import re
import warnings
from typing import Any, Awaitable, Callable, Sequence

from ..dialog import Dialog
from ..spaces import observation_dialog
from .base import FixedOrderQuestioner

# --- the prompt ----------------------------------------------------------------------------------

INSTRUCTION = (
    "You are helping a person find one specific photo in a large collection of photos. You cannot "
    "see the photo; the person can. You are given the person's short description of the photo and "
    "the questions asked so far with the person's answers. Ask ONE new short question about what "
    "can be seen in the photo, chosen so that its answer best tells this photo apart from other "
    "photos that fit the description. Do not repeat a question, do not ask about what the "
    "description or the answers already say, and do not answer the question yourself. Reply with "
    "the question only."
)
UNANSWERED_INSTRUCTION = (
    "You are helping a person find one specific photo in a large collection of photos. You cannot "
    "see the photo and you will not see the person's answers. You are given the person's short "
    "description of the photo and the questions already asked. Ask ONE new short question about "
    "what can be seen in the photo, whose answer would best tell it apart from other photos that "
    "fit the description. Do not repeat a question. Reply with the question only."
)
LIST_INSTRUCTION = (
    "You are helping a person find one specific photo in a large collection of photos. You cannot "
    "see the photo and you will not see the person's answers. From the person's short description "
    "alone, write {n} different short questions about what can be seen in the photo, whose answers "
    "would best tell it apart from other photos that fit the description. Write one question per "
    "line and nothing else."
)
RETRY_NOTE = "Do not ask any of these again: {avoid}. Ask a different question."

# Worked examples written for this project (invented scenes, not taken from any dataset).
FEW_SHOT: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    (
        "a man riding a bicycle down a city street",
        (("is it daytime?", "yes"), ("what color is the bicycle?", "red")),
        "is the man wearing a helmet?",
    ),
    (
        "a plate of food on a wooden table",
        (),
        "what kind of food is on the plate?",
    ),
)

# Fallback questions: VisDial-style, answerable about any photo.
GENERIC_QUESTIONS: tuple[str, ...] = (
    "what is in the background?",
    "how many people are there?",
    "is it indoors or outdoors?",
    "what color is the main object?",
    "is it daytime?",
    "what is on the left side?",
    "what is on the right side?",
    "are there any animals?",
    "are there any vehicles?",
    "what is the weather like?",
    "is there any writing visible?",
    "what is in the foreground?",
)

ANSWERED, UNANSWERED = "answered", "unanswered"


def _dialog_block(dialog: Dialog, answered: bool) -> str:
    lines = [f"Caption: {dialog.caption}"]
    if not dialog.turns:
        lines.append("Dialog so far: (no questions yet)")
    elif answered:
        lines.append("Dialog so far:")
        lines += [f"Q{i}: {q} A{i}: {a}" for i, (q, a) in enumerate(dialog.turns, start=1)]
    else:
        lines.append("Questions asked so far (answers not shown):")
        lines += [f"Q{i}: {q}" for i, q in enumerate(dialog.questions, start=1)]
    return "\n".join(lines)


def build_messages(
    dialog: Dialog,
    mode: str = ANSWERED,
    few_shot: Sequence = FEW_SHOT,
    instruction: str | None = None,
    avoid: Sequence[str] = (),
) -> list[dict[str, str]]:
    """The chat for one episode's next question (see the module docstring)."""
    answered = mode == ANSWERED
    system = instruction or (INSTRUCTION if answered else UNANSWERED_INSTRUCTION)
    messages = [{"role": "system", "content": system}]
    for caption, turns, question in few_shot:
        messages.append({"role": "user", "content": _dialog_block(Dialog(caption, tuple(turns)), answered)})
        messages.append({"role": "assistant", "content": question})
    user = _dialog_block(dialog, answered)
    if avoid:
        user += "\n" + RETRY_NOTE.format(avoid="; ".join(dict.fromkeys(avoid)))
    messages.append({"role": "user", "content": user})
    return messages


def build_list_messages(caption: str, n: int, instruction: str | None = None) -> list[dict[str, str]]:
    """The unanswered mode's one request per episode: ``n`` questions from the caption alone."""
    return [
        {"role": "system", "content": (instruction or LIST_INSTRUCTION).format(n=n)},
        {"role": "user", "content": f"Caption: {caption}"},
    ]


def render_plain(messages: Sequence[dict[str, str]]) -> str:
    """A chat as plain text for a model without a chat template, ending with "Next question:"."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            parts.append(m["content"] + "\n")
        else:
            parts.append("Next question: " + m["content"] + "\n\n")
    return "".join(parts) + "Next question:"


# --- output cleaning -----------------------------------------------------------------------------

_LABEL = re.compile(
    r"^\s*(?:[-*\u2022>]+|\(?\d{1,2}[.):]|(?:next\s+)?q(?:uestion)?\s*\d*\s*[:.)\-]|(?:new\s+|follow-up\s+)?question\s*\d*\s*:)\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`*_\u201c\u201d\u2018\u2019 "
_QUESTION_START = re.compile(
    r"^(?:what|what's|where|who|whose|which|how|why|when|is|are|was|were|do|does|did|can|could|"
    r"would|will|should|has|have|any|am)\b",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_ANSWER_MARK = re.compile(r"\banswer\s*:", re.IGNORECASE)


def _strip_labels(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = _LABEL.sub("", text).strip(_QUOTES)
    return text


def clean_generated_question(text: Any, max_chars: int = 200) -> str | None:
    """The one question in a model's reply, ending in "?", or None (see the module docstring)."""
    if not isinstance(text, str):
        return None
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln.strip(_QUOTES)]
    if not lines:
        return None
    # A line that does not end a sentence continues on the next one (a wrapped question).
    joined = lines[0]
    for ln in lines[1:]:
        joined += ("\n" if joined[-1] in ".?!:" or _LABEL.match(ln) else " ") + ln
    mark = joined.find("?")
    if mark >= 0:
        segment = joined[: mark + 1].split("\n")[-1]
        # The last sentence ending in this '?'; a "...question:" lead-in goes too.
        pieces = re.split(r"(?<=[.!])\s+|(?<=:)\s+", segment)
        question = pieces[-1]
        for piece in reversed(pieces[:-1]):
            if (piece.endswith(":") and "question" not in piece.lower() and len(piece.split()) <= 6
                    and _QUESTION_START.match(piece) and not _LABEL.match(piece)):
                question = piece + " " + question  # "what time is it: morning or evening?"
            else:
                break
    else:
        question = lines[0]
        marker = _ANSWER_MARK.search(question)
        if marker:
            question = question[: marker.start()]
        question = _strip_labels(question).rstrip(" .!:;,")
        if not _QUESTION_START.match(question) or len(question.split()) < 2:
            return None
        question += "?"
    question = _strip_labels(_CONTROL.sub(" ", question))
    question = " ".join(question.split()).strip(_QUOTES)
    question = question.rstrip("? ") + "?"
    if not re.search(r"[A-Za-z]", question) or len(question) > max_chars:
        return None
    return question


def parse_question_list(text: Any, max_chars: int = 200) -> list[str]:
    r"""Every question in a list reply ("1. ...?\n2. ...?" or several on one line), cleaned, in order."""
    if not isinstance(text, str):
        return []
    out = []
    for line in text.replace("\r", "\n").split("\n"):
        for piece in re.split(r"(?<=\?)\s+(?=\S)", line):
            q = clean_generated_question(piece, max_chars)
            if q is not None:
                out.append(q)
    return out


def repeat_key(question: str) -> str:
    """How repeats are detected: words only, case-folded."""
    return " ".join(re.findall(r"[a-z0-9']+", question.casefold()))


# --- errors --------------------------------------------------------------------------------------


class LLMBackendError(RuntimeError):
    """A generation call failed. ``fatal``: a configuration error (wrong key, model or URL)."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class LLMQuestionError(RuntimeError):
    """No usable question and ``fallback="error"``."""


# --- backends ------------------------------------------------------------------------------------


class CallableBackend:
    """Wraps ``fn(messages, sample) -> str`` (or ``fn(messages) -> str``) as a backend."""

    def __init__(self, fn: Callable[..., str]):
        self.fn = fn

    def generate(self, conversations: Sequence[list[dict]], sample: bool = False) -> list[str | Exception]:
        out: list[str | Exception] = []
        for messages in conversations:
            try:
                try:
                    out.append(self.fn(messages, sample))
                except TypeError:
                    out.append(self.fn(messages))
            except Exception as err:  # a per-episode failure, handled by the questioner
                out.append(err)
        return out


def _import_openai():
    """The openai SDK, imported only when the endpoint backend is asked for (the HF backend needs none)."""
    try:
        import openai
    except ImportError:
        raise ImportError(
            "the openai backend of the llm questioner needs the openai SDK: pip install 'chatir-env[llm]'"
        ) from None
    return openai


def _run_coroutine(coroutine: Any) -> Any:
    """Runs a coroutine to completion from synchronous code, also when the caller's thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # asyncio.run refuses to nest (a notebook's loop): run it on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint through the official ``openai`` SDK (async client).

    Every conversation of a batch is its own request (up to ``concurrency`` in flight); a request that
    fails returns its exception in its slot and never costs the other replies of the batch.

    Each attempt has a wall-clock deadline of ``timeout`` seconds for the whole exchange (connect, send,
    every byte of the reply): the SDK's httpx timeouts apply per socket read, so a server that drips a
    byte at a time would otherwise hold a request for minutes. The attempt is cancelled at the deadline,
    which closes its connection.

    An attempt is retried (``retries`` times; delays ``backoff * 2**attempt`` plus up to 25% jitter)
    after a deadline or httpx timeout, a connection error (refused, reset, a truncated body, a bad status
    line), HTTP 408, 409, 429 and 5xx, and a reply that is not a chat completion. A ``Retry-After``
    header (seconds or an HTTP date) sets the delay instead. Every delay is capped at ``max_backoff``,
    so a server asking for an hour costs ``max_backoff`` seconds per retry. HTTP 401/403/404 are
    configuration errors (``LLMBackendError.fatal``: a wrong key, model or URL); other 4xx fail without retry.

    Args:
        model: the endpoint's model name.
        base_url: the API root (``.../v1``); a URL ending in ``/chat/completions`` is accepted too.
        api_key_env: the environment variable holding the API key; None for a server that needs no key
            (the SDK insists on one, so the placeholder ``"none"`` is sent, as local servers expect).
        timeout: wall-clock deadline in seconds for one attempt.
        retries: retries per request after the first attempt.
        backoff: base of the exponential retry delay in seconds.
        max_backoff: cap in seconds on every retry delay, ``Retry-After`` included.
        max_tokens: ``max_tokens`` of the request.
        temperature: temperature of first attempts; ``retry_temperature`` when the questioner samples.
        retry_temperature: temperature when ``generate`` is called with ``sample=True``.
        concurrency: requests in flight at once.
        extra_body: extra JSON fields of every request (e.g. ``{"top_k": 20}`` for vLLM).
        sleep: the coroutine function that waits between attempts (tests record the delays with it).

    Raises:
        ImportError: the ``openai`` package is not installed (``pip install 'chatir-env[llm]'``).
        LLMBackendError: ``api_key_env`` names an unset variable (``fatal``).
    """

    RETRY_STATUS = {408, 409, 429}
    FATAL_STATUS = {401, 403, 404}

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_tokens: int = 48,
        temperature: float = 0.0,
        retry_temperature: float = 0.8,
        concurrency: int = 8,
        extra_body: dict | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self._openai = _import_openai()
        if not model:
            raise ValueError("the openai backend needs a model name (e.g. model: gpt-4o-mini)")
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model = model
        base = base_url.rstrip("/")
        # The SDK appends /chat/completions itself.
        self.base_url = base[: -len("/chat/completions")] if base.endswith("/chat/completions") else base
        self.url = self.base_url + "/chat/completions"
        self.api_key = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise LLMBackendError(
                    f"environment variable {api_key_env} (api_key_env) is not set; export the API key there, "
                    f"or set api_key_env: null for a server that needs no key",
                    fatal=True,
                )
        self.timeout, self.retries = float(timeout), int(retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.retry_temperature = float(retry_temperature)
        self.concurrency = max(1, int(concurrency))
        self.extra_body = dict(extra_body or {})
        self.sleep = sleep
        self.stats = {"requests": 0, "retries": 0, "timeouts": 0, "rate_limited": 0}

    @property
    def calls(self) -> int:
        """HTTP attempts made so far, retries included."""
        return self.stats["requests"]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, retry_after)
        return min(self.max_backoff, self.backoff * 2**attempt) * (1 + 0.25 * random.random())

    @staticmethod
    def _content(completion: Any) -> str:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise _Malformed(f"reply is not a chat completion (no choices[0].message): {str(completion)[:120]}")
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        if content is None:  # a refusal (message.refusal) or no text: the questioner sees no question
            return ""
        if isinstance(content, list):  # content parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise _Malformed(f"message content is a {type(content).__name__}, not text")
        return content

    async def _complete(self, client: Any, messages: list[dict], sample: bool) -> str:
        """One question's reply text, with retries; raises ``LLMBackendError`` when every attempt failed."""
        openai = self._openai
        last = "no attempt"
        for attempt in range(self.retries + 1):
            retry_after = None
            self.stats["requests"] += 1
            try:
                completion = await asyncio.wait_for(
                    client.chat.completions.create(
                        model=self.model,
                        messages=messages,
                        max_tokens=self.max_tokens,
                        temperature=self.retry_temperature if sample else self.temperature,
                        n=1,
                        extra_body=self.extra_body or None,
                    ),
                    self.timeout,
                )
                return self._content(completion)
            except (asyncio.TimeoutError, openai.APITimeoutError):
                self.stats["timeouts"] += 1
                last = f"{self.url} timed out: no complete reply within the {self.timeout:g} s deadline"
            except openai.APIStatusError as err:
                last = f"HTTP {err.status_code} from {self.url}: {err.message}"
                if err.status_code in self.FATAL_STATUS:
                    raise LLMBackendError(f"{last} (check base_url, model and the API key)", fatal=True) from None
                if err.status_code not in self.RETRY_STATUS and err.status_code < 500:
                    raise LLMBackendError(last) from None
                if err.status_code == 429:
                    self.stats["rate_limited"] += 1
                retry_after = _retry_after_seconds(err.response.headers.get("retry-after"))
            except openai.APIConnectionError as err:
                cause = err.__cause__ or err
                last = f"cannot reach {self.url} or its reply broke off: {type(cause).__name__}: {cause}"
            except (openai.APIResponseValidationError, ValueError, _Malformed) as err:
                last = f"malformed reply from {self.url}: {err}"
            if attempt < self.retries:
                self.stats["retries"] += 1
                await self.sleep(self._delay(attempt, retry_after))
        raise LLMBackendError(f"{last} (after {self.retries + 1} attempts)")

    async def _generate(self, conversations: Sequence[list[dict]], sample: bool) -> list[str | Exception]:
        # One client per batch: its connection pool belongs to this event loop.
        client = self._openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key or "none", max_retries=0, timeout=self.timeout
        )
        slots = asyncio.Semaphore(self.concurrency)

        async def one(messages: list[dict]) -> str:
            async with slots:
                return await self._complete(client, messages, sample)

        async with client:
            # return_exceptions: a failed request fills its own slot and leaves the others running.
            replies = await asyncio.gather(*(one(m) for m in conversations), return_exceptions=True)
        return [r if isinstance(r, (str, Exception)) else LLMBackendError(f"request ended with {r!r}") for r in replies]

    def generate(self, conversations: Sequence[list[dict]], sample: bool = False) -> list[str | Exception]:
        """One reply per conversation, in order; a failed request's slot holds its exception."""
        if not conversations:
            return []
        return _run_coroutine(self._generate(conversations, sample))


class _Malformed(Exception):
    pass


class HFBackend:
    """A local transformers model: batched greedy decoding (sampling for retries).

    ``model``: a directory (loaded with ``AutoModelForSeq2SeqLM`` when its config is
    encoder-decoder, else ``AutoModelForCausalLM``) or a loaded model, with ``tokenizer`` (a
    directory or a tokenizer; default: the model directory). ``chat_template``: ``"auto"`` uses the
    tokenizer's template when it has one, ``True`` requires it, ``False`` renders plain text.
    Prompts longer than ``max_input_tokens`` (default: the model's context minus
    ``max_new_tokens``) lose their beginning.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 48,
        retry_temperature: float = 0.8,
        chat_template: str | bool = "auto",
        max_input_tokens: int | None = None,
        seed: int = 0,
    ):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        if isinstance(model, (str, os.PathLike)):
            path = str(model)
            config = AutoConfig.from_pretrained(path)
            cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
            kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
            model = cls.from_pretrained(path, **kwargs)
            tokenizer = tokenizer if tokenizer is not None else path
        if tokenizer is None:
            raise ValueError("HFBackend needs a tokenizer with a loaded model (or a model directory)")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = int(max_new_tokens)
        self.retry_temperature = float(retry_temperature)
        self.seed = seed
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template is True and not has_template:
            raise ValueError("chat_template=True but the tokenizer has no chat template")
        self.use_template = has_template and chat_template in ("auto", True)
        if not self.encoder_decoder:
            tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
            tokenizer.pad_token = tokenizer.eos_token
        if max_input_tokens is None:
            context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
            if context and not self.encoder_decoder:
                max_input_tokens = max(8, int(context) - self.max_new_tokens)
            elif context:
                max_input_tokens = int(context)
        self.max_input_tokens = max_input_tokens

    def render(self, messages: list[dict]) -> str:
        if not self.use_template:
            return render_plain(messages)
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates that refuse a system role: fold it into the first user turn
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            rest = [dict(m) for m in messages if m["role"] != "system"]
            if system and rest:
                rest[0]["content"] = system + "\n\n" + rest[0]["content"]
            return self.tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)

    def generate(self, conversations: Sequence[list[dict]], sample: bool = False) -> list[str | Exception]:
        import torch

        prompts = [self.render(m) for m in conversations]
        out: list[str | Exception] = []
        tok = self.tokenizer
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            enc = tok(
                chunk,
                return_tensors="pt",
                padding=True,
                truncation=self.max_input_tokens is not None,
                max_length=self.max_input_tokens,
                add_special_tokens=not self.use_template,
            ).to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tok.pad_token_id}
            if sample:
                torch.manual_seed(self.seed + start)
                kwargs.update(do_sample=True, temperature=self.retry_temperature, top_p=0.95)
            else:
                kwargs.update(do_sample=False)
            with torch.no_grad():
                ids = self.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
            if not self.encoder_decoder:
                ids = ids[:, enc["input_ids"].shape[1] :]
            out.extend(tok.batch_decode(ids, skip_special_tokens=True))
        return out


# --- the questioner ------------------------------------------------------------------------------


def _empty_stats() -> dict[str, Any]:
    return {"questions": 0, "generated": 0, "retries": 0, "rejected_empty": 0, "rejected_repeat": 0,
            "fallbacks": 0, "passes": 0, "backend_errors": 0, "failures_in_row": 0, "backend_down": False,
            "last_error": None}


class LLMQuestioner:
    """ChatIR's prompted question generator (see the module docstring for prompt, cleaning, fallbacks).

    Args:
        backend: ``"hf"``, ``"openai"``, or a backend object / callable.
        model: HF directory or loaded model; the endpoint's model name for ``"openai"``.
        mode: ``"answered"`` (sees the dialog) or ``"unanswered"`` (caption and earlier questions only).
        few_shot: worked examples in the prompt (``True``: ``FEW_SHOT``, ``False``: none, or a list of
            ``(caption, [(q, a), ...], next_question)``).
        instruction: replaces the system instruction.
        max_attempts: generations per episode and round before the fallback (1: no retry).
        fallback: ``"generic"`` (default), ``"pass"`` or ``"error"``.
        on_error: ``"fallback"`` (default) or ``"raise"`` for backend failures.
        max_consecutive_failures: failed requests in a row (a success resets the count) before the
            backend counts as down and every later question is a fallback.
        timeout: the endpoint's wall-clock deadline in seconds per request attempt.
        retries: the endpoint's retries per request after its first attempt.
        backend_args: extra keyword arguments for the backend (``HFBackend`` / ``OpenAIChatBackend``),
            e.g. ``device``, ``dtype``, ``batch_size``, ``chat_template``, ``backoff``, ``max_backoff``,
            ``concurrency``, ``extra_body``.

    Raises:
        ValueError: an unknown ``mode``, ``fallback``, ``on_error`` or ``backend``, or a missing model.
        ImportError: ``backend="openai"`` without the ``openai`` package (``pip install 'chatir-env[llm]'``).
        LLMBackendError: ``backend="openai"`` with ``api_key_env`` naming an unset variable.
    """

    def __init__(
        self,
        backend: Any = "hf",
        model: Any = None,
        *,
        tokenizer: Any = None,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        mode: str = ANSWERED,
        few_shot: bool | Sequence = True,
        instruction: str | None = None,
        max_new_tokens: int = 48,
        temperature: float = 0.0,
        retry_temperature: float = 0.8,
        max_attempts: int = 3,
        max_question_chars: int = 200,
        fallback: str = "generic",
        fallback_questions: Sequence[str] = GENERIC_QUESTIONS,
        on_error: str = "fallback",
        max_consecutive_failures: int = 5,
        timeout: float = 30.0,
        retries: int = 3,
        backend_args: dict | None = None,
    ):
        if mode not in (ANSWERED, UNANSWERED):
            raise ValueError(f"mode must be {ANSWERED!r} or {UNANSWERED!r}, got {mode!r}")
        if fallback not in ("generic", "pass", "error"):
            raise ValueError(f"fallback must be 'generic', 'pass' or 'error', got {fallback!r}")
        if on_error not in ("fallback", "raise"):
            raise ValueError(f"on_error must be 'fallback' or 'raise', got {on_error!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if fallback == "generic" and not fallback_questions:
            raise ValueError("fallback='generic' needs at least one fallback question")
        extra = dict(backend_args or {})
        if backend == "hf":
            if model is None:
                raise ValueError("the hf backend needs model: a local model directory (or a loaded model + tokenizer)")
            self.backend = HFBackend(
                model, tokenizer, max_new_tokens=max_new_tokens, retry_temperature=retry_temperature, **extra
            )
        elif backend == "openai":
            self.backend = OpenAIChatBackend(
                model, base_url, api_key_env, timeout=timeout, retries=retries, max_tokens=max_new_tokens,
                temperature=temperature, retry_temperature=retry_temperature, **extra,
            )
        elif isinstance(backend, str):
            raise ValueError(f"backend must be 'hf', 'openai' or a backend object, got {backend!r}")
        elif hasattr(backend, "generate"):
            self.backend = backend
        elif callable(backend):
            self.backend = CallableBackend(backend)
        else:
            raise ValueError(f"backend {backend!r} has no generate() and is not callable")
        self.mode = mode
        self.few_shot = FEW_SHOT if few_shot is True else (() if few_shot is False else tuple(few_shot))
        self.instruction = instruction
        self.max_attempts = int(max_attempts)
        self.max_question_chars = int(max_question_chars)
        self.fallback = fallback
        self.fallback_questions = tuple(fallback_questions)
        self.on_error = on_error
        self.max_consecutive_failures = max(1, int(max_consecutive_failures))
        self.stats = _empty_stats()
        self._copy_backend_stats()
        self._failures_in_row = 0
        self._any_success = False
        self._warned = False
        self._plans: list[list[str] | None] = []

    # --- backend calls with failure accounting -----------------------------------------------------

    def _call(self, conversations: list[list[dict]], sample: bool) -> list[str | Exception]:
        """The backend's replies; failures come back as exceptions (or raise, per ``on_error``)."""
        if self.stats["backend_down"]:
            return [LLMBackendError("backend marked down")] * len(conversations)
        try:
            replies = list(self.backend.generate(conversations, sample=sample))
            if len(replies) != len(conversations):
                raise LLMBackendError(f"backend returned {len(replies)} replies for {len(conversations)} prompts")
        except Exception as err:
            replies = [err] * len(conversations)
        self._copy_backend_stats()
        errors = [r for r in replies if isinstance(r, Exception)]
        self.stats["backend_errors"] += len(errors)
        if errors:
            err = errors[0]
            self.stats["last_error"] = f"{type(err).__name__}: {err}"
            if getattr(err, "fatal", False) and not self._any_success:
                raise err
            if self.on_error == "raise":
                raise err if isinstance(err, LLMBackendError) else LLMBackendError(str(err))
            if not self._warned:
                warnings.warn(
                    f"LLMQuestioner: generation failed ({self.stats['last_error']}); using fallback questions",
                    RuntimeWarning, stacklevel=3,
                )
                self._warned = True
        # Requests count in batch order: a success anywhere resets the run, so a backend that answers
        # most requests is never marked down, whatever the batch size.
        for reply in replies:
            if isinstance(reply, Exception):
                self._failures_in_row += 1
            else:
                self._failures_in_row = 0
                self._any_success = True
        self.stats["failures_in_row"] = self._failures_in_row
        if self._failures_in_row >= self.max_consecutive_failures and not self.stats["backend_down"]:
            self.stats["backend_down"] = True
            warnings.warn(
                f"LLMQuestioner: {self._failures_in_row} failed requests in a row; the backend is considered down "
                f"and every further question is a fallback (last error: {self.stats['last_error']})",
                RuntimeWarning, stacklevel=3,
            )
        return replies

    def _copy_backend_stats(self) -> None:
        backend_stats = getattr(self.backend, "stats", None)
        if isinstance(backend_stats, dict):
            for name, value in backend_stats.items():
                self.stats[f"backend_{name}"] = value

    def _fallback(self, dialog: Dialog, asked: set[str]) -> str | None:
        if self.fallback == "error":
            raise LLMQuestionError(
                f"no usable question after {self.max_attempts} attempt(s) for caption {dialog.caption!r} "
                f"(last backend error: {self.stats['last_error']})"
            )
        if self.fallback == "pass":
            self.stats["passes"] += 1
            return None
        self.stats["fallbacks"] += 1
        for q in self.fallback_questions:
            if repeat_key(q) not in asked:
                return q
        return self.fallback_questions[dialog.round % len(self.fallback_questions)]

    def _generate_next(self, dialogs: list[Dialog], asked: list[set[str]], mode: str) -> list[str | None]:
        """One question per dialog, with retries and fallbacks."""
        n = len(dialogs)
        results: list[str | None] = [None] * n
        avoid: list[list[str]] = [[] for _ in range(n)]
        pending = list(range(n))
        for attempt in range(self.max_attempts):
            if not pending or self.stats["backend_down"]:
                break
            if attempt:
                self.stats["retries"] += len(pending)
            convs = [build_messages(dialogs[i], mode, self.few_shot, self.instruction, avoid[i]) for i in pending]
            replies = self._call(convs, sample=attempt > 0)
            still = []
            for i, reply in zip(pending, replies):
                if isinstance(reply, Exception):
                    continue  # the backend already retried; straight to the fallback
                self.stats["generated"] += 1
                q = clean_generated_question(reply, self.max_question_chars)
                if q is None:
                    self.stats["rejected_empty"] += 1
                    still.append(i)
                elif repeat_key(q) in asked[i]:
                    self.stats["rejected_repeat"] += 1
                    avoid[i].append(q)
                    still.append(i)
                else:
                    results[i] = q
            pending = still
        return results

    # --- the questioner interface ------------------------------------------------------------------

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        self._plans = [None] * len(captions)

    def ask(self, observations: Sequence[dict]) -> list[str | None]:
        dialogs = [observation_dialog(o) for o in observations]
        asked = [{repeat_key(q) for q in d.questions} for d in dialogs]
        if len(self._plans) != len(dialogs):
            self._plans = [None] * len(dialogs)
        results: list[str | None] = [None] * len(dialogs)
        if self.mode == UNANSWERED:
            self._plan(dialogs, [len(o["questions"]) for o in observations])
            for i, plan in enumerate(self._plans):
                while plan:
                    q = plan.pop(0)
                    if repeat_key(q) not in asked[i]:
                        results[i] = q
                        break
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            generated = self._generate_next([dialogs[i] for i in todo], [asked[i] for i in todo], self.mode)
            for i, q in zip(todo, generated):
                results[i] = q if q is not None else self._fallback(dialogs[i], asked[i])
        self.stats["questions"] += sum(r is not None for r in results)
        return results

    def _plan(self, dialogs: list[Dialog], rounds: list[int]) -> None:
        """Unanswered mode: at an episode's first question, ask for all of its questions at once."""
        todo = [i for i, p in enumerate(self._plans) if p is None]
        if not todo:
            return
        convs = [build_list_messages(dialogs[i].caption, rounds[i]) for i in todo]
        replies = self._call(convs, sample=False)
        for i, reply in zip(todo, replies):
            plan: list[str] = []
            if not isinstance(reply, Exception):
                self.stats["generated"] += 1
                seen: set[str] = set()
                for q in parse_question_list(reply, self.max_question_chars):
                    if repeat_key(q) not in seen:
                        seen.add(repeat_key(q))
                        plan.append(q)
            self._plans[i] = plan


class GenericQuestioner(FixedOrderQuestioner):
    """Asks ``GENERIC_QUESTIONS`` in order: a model-free free-text questioner for any photo."""

    def __init__(self, questions: Sequence[str] = GENERIC_QUESTIONS):
        super().__init__(questions)


__all__ = [
    "LLMQuestioner", "GenericQuestioner", "HFBackend", "OpenAIChatBackend", "CallableBackend", "LLMBackendError",
    "LLMQuestionError", "build_messages", "build_list_messages", "render_plain", "clean_generated_question",
    "parse_question_list", "repeat_key", "INSTRUCTION", "UNANSWERED_INSTRUCTION", "LIST_INSTRUCTION", "FEW_SHOT",
    "GENERIC_QUESTIONS",
]
