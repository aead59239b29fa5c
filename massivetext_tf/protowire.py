"""Protobuf wire-format varints, for the few messages the package reads and writes by hand
(SentencePiece model protos in `models.encoder_decoder.t5`, TF Serving warm-up
`PredictionLog`s in `export.serving`), where importing the generated message classes is not
possible or not wanted."""


def varint(value: int) -> bytes:
    """`value` (non-negative) as a base-128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint starting at `data[pos]` and the position after it; `ValueError` if the data
    ends inside it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
