"""Write the tiny HuggingFace T5 checkpoints and reference outputs that
tests/models/test_t5_exact.py compares our encoder-decoder against.

Run once, in a separate virtualenv (never the project's, which must not need torch):

    python3 -m venv /tmp/t5venv
    /tmp/t5venv/bin/pip install torch==2.13.0 'transformers>=4.40,<5' safetensors sentencepiece numpy
    /tmp/t5venv/bin/python tools/make_t5_fixtures.py [--output tests/models/fixtures/t5]

For each architecture it builds a tiny `transformers.T5ForConditionalGeneration` with random
weights (fixed seed; RMSNorm gains randomized too, so a mixed-up norm cannot pass), saves it
with `save_pretrained` (safetensors, PyTorch names), and writes `reference.npz`: fixed inputs,
the model's logits on them (teacher forcing) and `generate()`'s greedy output.

- `v1_0/`: T5 v1.0 (ReLU feed-forward, tied embeddings and the `d_model^-0.5` output rescale),
  float32, one `model.safetensors`.
- `v1_1/`: T5 v1.1 / Flan-T5 (gated GELU, untied), stored in bfloat16 and sharded
  (`model.safetensors.index.json`); the reference runs in float32 on the same bf16-rounded
  weights, so loading upcasts them exactly.

Both use a vocabulary of 100 rows, 8 relative-position buckets with max distance 20 and
encoder/decoder lengths past that distance, more decoder than encoder layers, so every config
field the converter reads changes the numbers. `v1_0/` also gets a tiny T5-convention
`spiece.model` saved by transformers' `T5Tokenizer(extra_ids=10)` with its tokenizer files, and
`tokenizer_reference.json`: transformers' ids of a few strings (`--only tokenizer` rewrites just
that part, leaving the checkpoints as they are). It also writes `hf_param_counts.json`:
transformers' own parameter counts of the `t5_small`, `t5_base`, `t5_v1_1_small` and
`t5_v1_1_base` architectures (built on the meta device, nothing allocated).
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from transformers import T5Config, T5ForConditionalGeneration

TINY = dict(
    vocab_size=100,
    d_model=16,
    d_kv=4,
    num_heads=4,
    d_ff=32,
    num_layers=2,
    num_decoder_layers=3,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)
VARIANTS = {
    "v1_0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "v1_1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
ENCODER_LENGTH, DECODER_LENGTH, NEW_TOKENS = 24, 24, 20
# Greedy steps whose best two logits are closer than this could flip under float32 noise;
# weights and inputs are redrawn until every step is clear of it and the greedy paths hold at
# least MIN_DISTINCT different tokens (random T5 models, tied ones above all, like to repeat
# one token). The logits along the greedy path are saved too, so the test can check every
# cached decoding step numerically, not only its argmax.
MIN_MARGIN = 1e-3
MIN_DISTINCT = 5
HF_SIZES = {
    "t5_small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8, feed_forward_proj="relu",
                     tie_word_embeddings=True),
    "t5_base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, feed_forward_proj="relu",
                    tie_word_embeddings=True),
    "t5_v1_1_small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5_v1_1_base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                         feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def _inputs(seed):
    rng = np.random.default_rng(seed)
    encoder = rng.integers(2, TINY["vocab_size"], (2, ENCODER_LENGTH)).astype("int64")
    encoder[:, -1] = 1  # </s>
    encoder_mask = np.ones_like(encoder)
    encoder[1, -5:] = 0  # a padded row: 4 pads after its </s>
    encoder[1, -5] = 1
    encoder_mask[1, -4:] = 0
    decoder = rng.integers(2, TINY["vocab_size"], (2, DECODER_LENGTH)).astype("int64")
    decoder[:, 0] = TINY["decoder_start_token_id"]
    return encoder, encoder_mask, decoder


def _greedy_margin(model, encoder, encoder_mask, sequences):
    """Smallest gap between the best and second-best logit over the greedy steps taken,
    and the logits of those steps."""
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(encoder),
            attention_mask=torch.tensor(encoder_mask),
            decoder_input_ids=sequences[:, :-1],
        ).logits
    top2 = torch.topk(logits, 2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1]).min()), logits.numpy()


def _random_model(name, seed):
    torch.manual_seed(seed)
    config = T5Config(**TINY, **VARIANTS[name])
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "layer_norm" in param_name:
                param.uniform_(0.5, 1.5)
        if name == "v1_1":  # store bf16; the float32 reference uses the same rounded values
            for param in model.parameters():
                param.copy_(param.to(torch.bfloat16).to(torch.float32))
    return model


def _reference(model, seed):
    encoder, encoder_mask, decoder = _inputs(seed)
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(encoder),
            attention_mask=torch.tensor(encoder_mask),
            decoder_input_ids=torch.tensor(decoder),
        ).logits.numpy()
        greedy = model.generate(
            input_ids=torch.tensor(encoder),
            attention_mask=torch.tensor(encoder_mask),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,  # run every step: the whole path is compared
            # transformers sizes its decoding cache by `num_layers` (the encoder's), which
            # fails when the decoder is deeper; full recomputation is the same greedy path.
            use_cache=False,
        )
    margin, greedy_logits = _greedy_margin(model, encoder, encoder_mask, greedy)
    distinct = len(set(greedy[:, 1:].flatten().tolist()))
    return (encoder, encoder_mask, decoder, logits, greedy, greedy_logits), margin, distinct


def make_variant(name, output):
    for model_seed in range(100):
        model = _random_model(name, model_seed)
        (encoder, encoder_mask, decoder, logits, greedy, greedy_logits), margin, distinct = _reference(
            model, model_seed
        )
        if margin > MIN_MARGIN and distinct >= MIN_DISTINCT:
            break
    else:
        raise RuntimeError(f"{name}: no seed gave a varied greedy path clear of near-ties")
    directory = os.path.join(output, name)
    os.makedirs(directory, exist_ok=True)
    for stale in os.listdir(directory):
        os.remove(os.path.join(directory, stale))
    if name == "v1_1":
        model.to(torch.bfloat16).save_pretrained(directory, safe_serialization=True, max_shard_size="20KB")
        model.to(torch.float32)
    else:
        model.save_pretrained(directory, safe_serialization=True)
    np.savez_compressed(
        os.path.join(directory, "reference.npz"),
        encoder_token_ids=encoder.astype("int32"),
        encoder_padding_mask=encoder_mask.astype("int32"),
        decoder_token_ids=decoder.astype("int32"),
        logits=logits.astype("float32"),
        greedy_token_ids=greedy.numpy().astype("int32"),
        greedy_logits=greedy_logits.astype("float32"),
    )
    with open(os.path.join(directory, "reference.json"), "w") as f:
        json.dump(
            {
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "seed": model_seed,
                "greedy_min_margin": margin,
                "greedy_min_distinct_tokens": distinct,
                "num_parameters": model.num_parameters(),
            },
            f,
            indent=2,
        )
        f.write("\n")
    print(f"{name}: seed {model_seed}, greedy margin {margin:.4f}, {model.num_parameters()} parameters -> {directory}")


def hf_param_counts(output):
    counts = {}
    for preset, sizes in HF_SIZES.items():
        with torch.device("meta"):
            model = T5ForConditionalGeneration(T5Config(vocab_size=32128, **sizes))
        counts[preset] = model.num_parameters()
    with open(os.path.join(output, "hf_param_counts.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "counts": counts}, f, indent=2)
        f.write("\n")
    print(counts)


# A tiny T5-convention SentencePiece model (pad 0, eos 1, unk 2, no bos; 60 pieces + 10
# sentinels = 70 ids, fewer than the checkpoints' 100 embedding rows, as T5's 32,100 ids sit
# under its 32,128 rows), trained on a small generated corpus.
TOKENIZER_PIECES, TOKENIZER_EXTRA_IDS = 60, 10
_WORDS = ("the a fox dog cat sleeps runs jumps over under quick brown lazy red green house tree "
          "translate English to German question answer context is was and or not yes no").split()
TOKENIZER_STRINGS = [
    "translate English to German: the quick brown fox",
    "question: is the dog lazy? context: the lazy dog sleeps under a tree.",
    "The Fox was QUICK, and the cat   was not.",
    "zebra xylophone 123",
    "the <extra_id_0> fox <extra_id_1>",
    "the<extra_id_0>fox",
]


def make_tokenizer(output):
    """Train the tiny spiece.model, save it with transformers' T5Tokenizer (extra_ids=10) into
    `v1_0/` next to the checkpoint, and record transformers' ids of TOKENIZER_STRINGS (slow
    tokenizer legacy and non-legacy, and the fast one) in `v1_0/tokenizer_reference.json`."""
    import io as _io

    import sentencepiece as spm
    from transformers import T5Tokenizer, T5TokenizerFast

    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(_WORDS, size=12)) + "." for _ in range(2000)]
    model = _io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=TOKENIZER_PIECES,
        model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=1, seed_sentencepiece_size=10000,
        normalization_rule_name="identity",  # no 240 KB NFKC table in a test fixture
    )
    directory = os.path.join(output, "v1_0")
    spiece = os.path.join(directory, "spiece.model")
    with open(spiece, "wb") as f:
        f.write(model.getvalue())
    slow = T5Tokenizer(spiece, extra_ids=TOKENIZER_EXTRA_IDS, legacy=True)
    slow.save_pretrained(directory)
    reference = {"extra_ids": TOKENIZER_EXTRA_IDS, "pieces": TOKENIZER_PIECES, "strings": TOKENIZER_STRINGS,
                 "transformers": transformers.__version__,
                 "sentinel_ids": slow.convert_tokens_to_ids([f"<extra_id_{n}>" for n in range(TOKENIZER_EXTRA_IDS)]),
                 "slow_legacy": [slow.encode(s) for s in TOKENIZER_STRINGS],
                 "slow_non_legacy": [T5Tokenizer(spiece, extra_ids=TOKENIZER_EXTRA_IDS, legacy=False).encode(s)
                                     for s in TOKENIZER_STRINGS],
                 "fast": [T5TokenizerFast.from_pretrained(directory).encode(s) for s in TOKENIZER_STRINGS],
                 "decoded": [slow.decode(slow.encode(s), skip_special_tokens=True) for s in TOKENIZER_STRINGS]}
    with open(os.path.join(directory, "tokenizer_reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join("tests", "models", "fixtures", "t5"))
    parser.add_argument("--only", choices=("tokenizer",), help="write only this part (keeps the rest as is)")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    if args.only != "tokenizer":
        for name in VARIANTS:
            make_variant(name, args.output)
        hf_param_counts(args.output)
    make_tokenizer(args.output)


if __name__ == "__main__":
    main()
