"""TF Serving warm-up requests: `assets.extra/tf_serving_warmup_requests` of an export.

A TFRecord of `tensorflow.serving.PredictionLog` protos, encoded here with the protobuf wire
format directly (field numbers from tensorflow_serving/apis/{prediction_log,predict,model}.proto),
so export does not depend on the `tensorflow-serving-api` package; `read_warmup_requests`
parses them back.
"""
import numpy as np
import tensorflow as tf

from massivetext_tf.protowire import read_varint, varint

WARMUP_FILE = "tf_serving_warmup_requests"


def _field(number, payload):
    """A length-delimited field (wire type 2)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def encode_prediction_log(model_name, signature_name, inputs):
    """Serialized `PredictionLog{predict_log: PredictLog{request: PredictRequest{...}}}`.

    PredictionLog.predict_log = 6; PredictLog.request = 1; PredictRequest.model_spec = 1,
    PredictRequest.inputs = 2 (map<string, TensorProto>: entries with key = 1, value = 2);
    ModelSpec.name = 1, ModelSpec.signature_name = 3.
    """
    model_spec = _field(1, model_name) + _field(3, signature_name)
    request = _field(1, model_spec)
    for key in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[key]).SerializeToString()
        request += _field(2, _field(1, key) + _field(2, tensor))
    return _field(6, _field(1, request))




def _fields(data):
    """(field number, wire type, value) of a serialized message; length-delimited values as
    bytes, varints as ints."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value, pos = bytes(data[pos : pos + length]), pos + length
        elif wire == 1:
            value, pos = bytes(data[pos : pos + 8]), pos + 8
        elif wire == 5:
            value, pos = bytes(data[pos : pos + 4]), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} in field {number}")
        yield number, wire, value


def decode_prediction_log(data):
    """Inverse of `encode_prediction_log`: `{"model_name", "signature_name", "inputs"}` with
    numpy arrays. Raises ValueError on anything but a PredictionLog with a predict_log."""
    predict_log = [v for n, w, v in _fields(data) if n == 6 and w == 2]
    if len(predict_log) != 1:
        raise ValueError("not a PredictionLog with a predict_log")
    request = [v for n, w, v in _fields(predict_log[0]) if n == 1 and w == 2]
    if len(request) != 1:
        raise ValueError("PredictLog without a request")
    out = {"model_name": "", "signature_name": "", "inputs": {}}
    for number, wire, value in _fields(request[0]):
        if number == 1:
            for n, _, v in _fields(value):
                if n == 1:
                    out["model_name"] = v.decode("utf-8")
                elif n == 3:
                    out["signature_name"] = v.decode("utf-8")
        elif number == 2:
            entry = dict((n, v) for n, _, v in _fields(value))
            proto = tf.make_tensor_proto(np.zeros([0]))
            proto.ParseFromString(entry.get(2, b""))
            out["inputs"][entry[1].decode("utf-8")] = tf.make_ndarray(proto)
    return out


def default_warmup_requests(model_kind, max_length):
    """(signature_name, inputs) pairs exercising every serving signature once (batch 1)."""
    length = min(8, max_length)
    ids = np.array([[2] + [4 + i for i in range(length - 1)]], np.int32)
    mask = np.ones_like(ids)
    prompt = np.array([b"To be, or not to be, that is the question:"], dtype=object)
    requests = [("generate", {"prompts": prompt}), ("serving_default", {"prompts": prompt})]
    if model_kind == "encoder_decoder":
        requests.append(("score", {"texts": prompt, "targets": np.array([b"Whether 'tis nobler"], dtype=object)}))
        requests.append(
            (
                "forward",
                {
                    "encoder_token_ids": ids,
                    "encoder_padding_mask": mask,
                    "decoder_token_ids": ids,
                    "decoder_padding_mask": mask,
                },
            )
        )
    else:
        requests.append(("score", {"texts": prompt}))
        requests.append(("forward", {"token_ids": ids, "padding_mask": mask}))
    return requests


def write_warmup_requests(export_dir, model_name, requests):
    """Write `assets.extra/tf_serving_warmup_requests` (TFRecord of PredictionLog)."""
    extra = tf.io.gfile.join(export_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    path = tf.io.gfile.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(encode_prediction_log(model_name, signature_name, inputs))
    return path


def read_warmup_requests(path):
    """Parse a warm-up file back into a list of `decode_prediction_log` dicts."""
    return [decode_prediction_log(record.numpy()) for record in tf.data.TFRecordDataset(path)]
