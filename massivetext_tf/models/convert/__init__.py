"""Checkpoint conversion from other toolkits' formats (numpy only, no torch).

- `hf_t5`: HuggingFace T5 / T5 v1.1 / Flan-T5 checkpoints (`save_pretrained` directories with
  `config.json` and safetensors weights) to and from `EncoderDecoderSeq2SeqLM`.
"""
