"""Fakes for the autointerp tests: hand-made latent examples with a known keyword, judges that answer by
rule (always right, at random, or right only when the explanation names the latent's keyword), a
bag-of-words embedder, and a fake OpenAI-compatible chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from saelab.evals.autointerp.examples import ExampleSet, LatentExamples
from saelab.evals.autointerp.judge import Chat

FILLER = "the of and a to in is was for on with as by at from it this that are be".split()
KEYWORDS = ("cat", "river", "violin", "engine", "purple", "winter")


def context(rng: np.random.Generator, keyword: str | None, width: int = 9) -> tuple[list[str], np.ndarray]:
    """Tokens of a context (" word" each) and the latent's activations: the keyword at the centre fires."""
    words = [str(w) for w in rng.choice(FILLER, width)]
    acts = np.zeros(width, np.float32)
    if keyword is not None:
        words[width // 2] = keyword
        acts[width // 2] = 1.0 + rng.random()
        acts[width // 2 + 1] = 0.1  # a weak activation after it: under delphi's 0.3 threshold
    return [f" {w}" for w in words], acts


def latent_examples(latent: int, keyword: str, n: int, seed: int = 0) -> LatentExamples:
    """n train, n test and n non-activating contexts of a latent that fires on `keyword`."""
    rng = np.random.default_rng(seed + latent)

    def ex_set(kw: str | None) -> ExampleSet:
        pairs = [context(rng, kw) for _ in range(n)]
        return ExampleSet([p[0] for p in pairs], [p[1] for p in pairs])

    return LatentExamples(latent, ex_set(keyword), ex_set(keyword), ex_set(None))


EXAMPLE_LINE = re.compile(r"^Example \d+: (.*)$", re.MULTILINE)


def query_parts(chat: Chat) -> tuple[str, list[str]]:
    """(explanation, example texts) of a classifier chat's last user turn."""
    last = chat[-1]["content"]
    explanation = last.split("\n", 1)[0].removeprefix("Latent explanation: ")
    return explanation, EXAMPLE_LINE.findall(last.split("Text examples:", 1)[1])


class KeywordJudge:
    """Explains a latent as "the word KEYWORD" (the first highlighted word of its examples); labels an
    example 1 when the explanation's keyword is in it (detection) or is exactly what is highlighted
    (fuzzing). `informed=False`: labels every example 0 when the explanation does not name a keyword that
    appears anywhere in the prompt's examples, so a wrong explanation scores chance."""

    name = "fake:keyword"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def complete(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        self.calls.append(len(chats))
        return [self._answer(c) for c in chats]

    def _answer(self, chat: Chat) -> str:
        last = chat[-1]["content"]
        if not last.startswith("Latent explanation:"):
            word = re.search(r"<<\s*(\w+)", last).group(1)
            return f"The marked words.\n[EXPLANATION]: the word {word}"
        explanation, examples = query_parts(chat)
        keyword = explanation.removeprefix("the word ")
        fuzzing = "marked like <<this>>" in chat[0]["content"]
        if fuzzing:
            labels = [int(re.findall(r"<<\s*(\w+)\s*>>", e) == [keyword]) for e in examples]
        else:
            labels = [int(f" {keyword} " in f"{e} ") for e in examples]
        return json.dumps(labels).replace(" ", "")


class RandomJudge:
    """Answers each example with a fair coin (seeded), in delphi's list format."""

    name = "fake:random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def complete(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        out = []
        for chat in chats:
            last = chat[-1]["content"]
            if not last.startswith("Latent explanation:"):
                out.append("[EXPLANATION]: something")
                continue
            n = len(query_parts(chat)[1])
            out.append(json.dumps(self.rng.integers(0, 2, n).tolist()))
        return out


def bag_of_words(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm counts of the KEYWORDS (a text without one is the zero vector): the cosine of an explanation
    and a context is 1 when they name the same keyword, 0 otherwise."""
    vocab = {w: i for i, w in enumerate(KEYWORDS)}
    out = np.zeros((len(texts), len(vocab)), np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t):
            if w in vocab:
                out[i, vocab[w]] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class FakeOpenAI:
    """A chat-completions endpoint on a free port of 127.0.0.1: replies "echo: <last user message>" (cut to
    max_tokens characters) and records every request (path, headers, body). `fail` makes it answer HTTP 500."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if fail or self.path != "/v1/chat/completions":
                    self.send_response(500 if fail else 404)
                    self.end_headers()
                    self.wfile.write(b'{"error": "no"}')
                    return
                text = "echo: " + body["messages"][-1]["content"]
                reply = {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text[: body["max_tokens"]]}}]
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
