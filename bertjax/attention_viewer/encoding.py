"""Compact array encodings of the attention viewer's data (format "bertjax-attention-view/1"): pure numpy.

Every array travels as {"dtype", "shape", "encoding": "gzip+base64", "data"}: its C-order little-endian bytes,
gzip-compressed, base64-encoded (the page decodes them with `DecompressionStream`). Two quantisations keep pages of
big models small:

  encode_uint8_probs(probs_LxNxTxT)   attention probabilities in [0, 1] as bytes: byte = round(prob * 255), so the
                                      page's prob = byte / 255 is off by at most 1/510 (ATTENTION_ERROR)
  encode_int8_vectors(x_LxTxNxD)      query / key vectors as int8 with a float32 scale per (layer, token, head)
                                      vector: scale = max|x| / 127, q = round(x / scale); value = q * scale (a zero
                                      vector gets scale 0 and q 0)

`decode_array`, `decode_uint8_probs` and `decode_int8_vectors` invert them (for checks and tests).
"""

from __future__ import annotations

import base64
import gzip

import numpy as np

ENCODING = "gzip+base64"
ATTENTION_ERROR = 1.0 / 510.0  # max abs error of a probability stored as round(prob * 255) / 255


def encode_array(x, dtype: str) -> dict:
    """`x` as {"dtype", "shape", "encoding": "gzip+base64", "data"}: C-order little-endian bytes of `dtype`
    ("uint8", "int8", "float32", ...), gzip-compressed (reproducibly: no timestamp), base64-encoded."""
    array = np.ascontiguousarray(np.asarray(x), dtype=np.dtype(dtype).newbyteorder("<"))
    data = base64.b64encode(gzip.compress(array.tobytes(order="C"), compresslevel=6, mtime=0)).decode("ascii")
    return {"dtype": np.dtype(dtype).name, "shape": list(array.shape), "encoding": ENCODING, "data": data}


def decode_array(entry: dict, shape=None) -> np.ndarray:
    """The numpy array of an `encode_array`-style entry; `shape` where the entry carries none (int8 vectors)."""
    if entry.get("encoding") != ENCODING:
        raise ValueError(f"unknown encoding {entry.get('encoding')!r}; expected {ENCODING!r}")
    raw = gzip.decompress(base64.b64decode(entry["data"]))
    array = np.frombuffer(raw, dtype=np.dtype(entry["dtype"]).newbyteorder("<"))
    return array.reshape(entry.get("shape", shape) if shape is None else shape)


def encode_uint8_probs(probs_LxNxTxT) -> dict:
    """Attention probabilities (any shape, values in [0, 1]) as a uint8 entry: byte = round(prob * 255), clipped to
    0..255, so that byte / 255 is within 1/510 of the probability."""
    probs = np.asarray(probs_LxNxTxT, dtype=np.float64)
    if not np.all(np.isfinite(probs)):
        raise ValueError("attention probabilities must be finite")
    return encode_array(np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8), "uint8")


def decode_uint8_probs(entry: dict) -> np.ndarray:
    """The float32 probabilities (byte / 255) of an `encode_uint8_probs` entry."""
    return decode_array(entry).astype(np.float32) / np.float32(255.0)


def encode_int8_vectors(x_LxTxNxD) -> dict:
    """Vectors along the last axis (query or key [L, T, N, D]) as int8 with a float32 scale per vector:
    {"dtype": "int8", "encoding", "data", "scale": {float32 entry of shape [L, T, N]}}, where
    scale = max|x| / 127 and int8 = round(x / scale) (0 and scale 0 for a zero vector); value = int8 * scale.
    The shape is left to the caller (the viewer's "neurons": {"shape": [L, T, N, D], ...})."""
    x = np.asarray(x_LxTxNxD, dtype=np.float64)
    if x.ndim < 1 or not np.all(np.isfinite(x)):
        raise ValueError("vectors must be a finite array of at least one dimension")
    scale = (np.abs(x).max(axis=-1) / 127.0 if x.shape[-1] else np.zeros(x.shape[:-1])).astype(np.float32)
    # Divide by the stored float32 scale, so that int8 * scale (what the page computes) is the nearest value.
    divisor = np.where(scale > 0, scale.astype(np.float64), 1.0)[..., None]
    quantised = np.clip(np.rint(x / divisor), -127, 127).astype(np.int8)
    entry = encode_array(quantised, "int8")
    del entry["shape"]
    entry["scale"] = encode_array(scale, "float32")
    return entry


def decode_int8_vectors(entry: dict, shape) -> np.ndarray:
    """The float32 vectors (int8 * scale) of an `encode_int8_vectors` entry of the given [..., D] shape."""
    quantised = decode_array(entry, shape).astype(np.float32)
    scale = decode_array(entry["scale"]).astype(np.float32)
    return quantised * scale[..., None]
