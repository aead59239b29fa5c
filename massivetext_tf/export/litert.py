"""Running a LiteRT export on the host, without TensorFlow: `LiteRTGenerator`.

Needs `ai_edge_litert` and numpy only, so an app (or the demo's fresh-process check) can
decode with a `.tflite` file from `massivetext_tf.export.tflite.export_tflite` in a process that
never imports TensorFlow. The step it calls, the file's `decode` signature, is the task's
`decoding_next` closure (`massivetext_tf.models.decoding`); the greedy host loop lives here
only.
"""
import numpy as np

EOS_ID = 1  # `</s>`, as massivetext_tf.data.tokenizer


def read_bytes(path):
    """The bytes of `path`: a local file directly, a URL (`gs://...`) through `tf.io.gfile`
    (TensorFlow is imported only then)."""
    if "://" in str(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


class LiteRTGenerator:
    """Greedy decoding through a LiteRT file's `prefill` + `decode` signatures.

    Example:
    >>> gen = LiteRTGenerator("saved_models/tiny/tflite/tiny.float32.tflite")  # doctest: +SKIP
    >>> gen.generate([2, 101, 7], max_new_tokens=16)                           # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=read_bytes(path), num_threads=num_threads)
        self.prefill_runner = self.interpreter.get_signature_runner("prefill")
        self.decode_runner = self.interpreter.get_signature_runner("decode")
        self.forward_runner = self.interpreter.get_signature_runner("forward")
        details = self.prefill_runner.get_input_details()["token_ids"]
        self.max_length = int(details["shape"][1])

    def prefill(self, prompt_ids):
        if not 1 <= len(prompt_ids) <= self.max_length:
            raise ValueError(
                f"prefill: the prompt has {len(prompt_ids)} tokens; this LiteRT file takes 1 to "
                f"{self.max_length} (its static length)"
            )
        ids = np.zeros([1, self.max_length], np.int32)
        ids[0, : len(prompt_ids)] = prompt_ids
        out = self.prefill_runner(token_ids=ids, length=np.array(len(prompt_ids), np.int32))
        return out["logits"], out["cache"]

    def decode(self, token_id, index, cache):
        if not 0 <= index < self.max_length:
            raise ValueError(
                f"decode: index {index} is outside [0, {self.max_length}) (the file's static length)"
            )
        out = self.decode_runner(
            token_id=np.array([[token_id]], np.int32), index=np.array(index, np.int32), cache=cache
        )
        return out["logits"], out["cache"]

    def forward(self, token_ids, padding_mask):
        return self.forward_runner(
            token_ids=np.asarray(token_ids, np.int32), padding_mask=np.asarray(padding_mask, np.int32)
        )["logits"]

    def generate(self, prompt_ids, max_new_tokens, stop_at_eos=True):
        """Greedy new token ids (`</s>` included when reached) after `prompt_ids`
        (which should start with `<s>`)."""
        prompt_ids = list(prompt_ids)
        if not 1 <= len(prompt_ids) < self.max_length:
            raise ValueError(f"prompt must have 1..{self.max_length - 1} tokens")
        max_new_tokens = min(max_new_tokens, self.max_length - len(prompt_ids))
        logits, cache = self.prefill(prompt_ids)
        tokens = []
        index = len(prompt_ids)
        while True:
            token = int(np.argmax(logits[0]))
            tokens.append(token)
            if (stop_at_eos and token == EOS_ID) or len(tokens) >= max_new_tokens:
                return tokens
            logits, cache = self.decode(token, index, cache)
            index += 1
