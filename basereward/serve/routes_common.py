"""What every router reaches: the app's `ServeState` (the one `RewardService` and what is derived from it once),
injected as a FastAPI dependency so route functions are plain module-level functions over request + state.

    async def route(req: SomeRequest, st: State): ... st.service.score(...)

`create_app` stores the state on `app.state.serve`; a route never builds its own (one service per app).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from basereward.serve import protocols as P
from basereward.serve.media import MediaPolicy, RequestError
from basereward.serve.parse import (
    BadRequest,
    Parsed,
    collect,
    sample_from_messages,
    sample_from_text,
    texts_from_input,
)
from basereward.serve.service import RewardService, Scored


@dataclass(frozen=True)
class ServeState:
    service: RewardService
    # Special tokens that clients sending decoded text (OpenRLHF, the vLLM/SGLang text routes) leave at the end of
    # a response: stripped before scoring so the scored token is the template's own turn end.
    strip_tokens: tuple[str, ...]

    @classmethod
    def of(cls, service: RewardService) -> ServeState:
        tok = service.scorer.encoder.tokenizer
        specials = ("<|endoftext|>", "<|im_end|>", tok.pad_token, tok.eos_token)
        return cls(service, tuple(dict.fromkeys(t for t in specials if t)))

    @property
    def policy(self) -> MediaPolicy:
        return self.service.policy

    def text_sample(self, text: str, field: str) -> Parsed:
        """One decoded-text input (vLLM/SGLang `input`, LLaMA-Factory `messages[i]`) as a sample."""
        return Parsed(sample_from_text(text, field, self.policy, strip_tokens=self.strip_tokens), field)

    def parse_inputs(self, req: P.ClassifyRequest | P.EmbeddingRequest) -> list[Parsed]:
        """The vLLM/SGLang-style body: exactly one of `input` (text(s) or token ids) or chat `messages`."""
        messages = getattr(req, "messages", None)
        if (req.input is None) == (messages is None):
            raise BadRequest([RequestError("input", "send exactly one of `input` or `messages`")])
        if messages is not None:
            return [Parsed(sample_from_messages(messages, [], [], "", self.policy), "messages")]
        texts = texts_from_input(req.input, "input", self.service.scorer.encoder.tokenizer)
        return collect(texts, lambda _i, ft: self.text_sample(ft[1], ft[0]))


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


State = Annotated[ServeState, Depends(serve_state)]


def usage(scored: Scored) -> P.Usage:
    n = sum(scored.tokens)
    return P.Usage(prompt_tokens=n, total_tokens=n)
