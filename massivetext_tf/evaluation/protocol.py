"""What the evaluation adapters take and return, and how they lay tokens out.

lm-evaluation-harness-shaped requests and results (`LoglikelihoodResult`, `RollingResult`,
`GenerationRequest`, `GenerationResult`), the token ids every model of the toolkit shares
(`<pad>` 0, `</s>` 1, `<s>` 2), lm-evaluation-harness's rolling windows (`lm_eval_plan`; the
toolkit's own are `massivetext_tf.models.scoring.window_plan`), the host-side SentencePiece
tokenizer and the padded lengths batches are bucketed to.
"""
from __future__ import annotations

import dataclasses
import math

PAD_ID, EOS_ID, BOS_ID = 0, 1, 2
DEFAULT_BATCH_SIZE = 8

ROLLING_WINDOWS = ("stride", "lm-eval")


def lm_eval_plan(num_tokens, window):
    """`[(start, first_scored, end)]` (as `window_plan`) of lm-evaluation-harness's rolling
    log-likelihood over `num_tokens` tokens, `<s>` included: `lm_eval.utils.
    get_rolling_token_windows(tokens, <s>, max_seq_len=window, context_len=1)` made disjoint
    (`make_disjoint_window`), as its HuggingFace model runs them. The first window feeds up
    to `window` tokens and scores them all; each later one scores the next `window` tokens
    (fewer at the end) after the `window` tokens before its last one, so the final window
    has the most context. Windows feed `window` tokens, one more than `window_plan`'s."""
    if window < 1:
        raise ValueError(f"`window` must be at least 1, got {window}.")
    n = num_tokens - 1  # tokens to predict (the text's)
    if n <= 0:
        return []
    first = min(window, n)
    plan, predicted = [(0, 1, first + 1)], first
    while predicted < n:
        end = predicted + min(n - predicted, window)  # in text tokens; seq index = text index + 1
        plan.append((end - window, predicted + 1, end + 1))
        predicted = end
    return plan


@dataclasses.dataclass
class LoglikelihoodResult:
    """One `loglikelihood` answer (lm-eval's `(logprob, is_greedy)` and what was cut).

    Attributes:
        logprob: natural log, summed over the scored tokens (nan when skipped).
        is_greedy: every scored token is the argmax.
        num_tokens: scored tokens.
        truncated: the context was left-truncated to fit the window.
        skipped: the continuation alone does not fit the window: not scored.
    """

    logprob: float
    is_greedy: bool
    num_tokens: int
    truncated: bool = False
    skipped: bool = False


@dataclasses.dataclass
class RollingResult:
    """One `loglikelihood_rolling` answer: every token of a text scored once.

    Attributes:
        logprob: natural log, summed over the text's tokens.
        num_tokens: scored tokens.
    """

    logprob: float
    num_tokens: int


@dataclasses.dataclass
class GenerationRequest:
    """One `generate_until` request (greedy, from `<s>` + context).

    Attributes:
        context: the prompt text.
        until: stop strings: the text is cut before the first one.
        max_new_tokens: most tokens generated.
    """

    context: str
    until: tuple = ()
    max_new_tokens: int = 32


@dataclasses.dataclass
class GenerationResult:
    """One `generate_until` answer.

    Attributes:
        text: only the new text, cut before the first stop string.
        truncated: the prompt was cut to leave room in the window.
    """

    text: str
    truncated: bool = False


class SentencePiece:
    """Host-side tokenizer over a serialized SentencePiece model (the model's own)."""

    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.proto = proto
        self.processor = spm.SentencePieceProcessor(model_proto=proto)

    def encode(self, text: str) -> list[int]:
        return list(self.processor.encode(text))

    def decode(self, ids) -> str:
        return self.processor.decode([int(i) for i in ids])


def _bucket(length: int, maximum: int) -> int:
    """Padded length: the next power of two (at least 16), at most `maximum`."""
    return min(maximum, max(16, 1 << max(0, (length - 1)).bit_length()))


def perplexity(logprob: float, num_tokens: int) -> float:
    """`exp(-logprob / num_tokens)`; nan for no tokens."""
    return math.exp(-logprob / num_tokens) if num_tokens else float("nan")
