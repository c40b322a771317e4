"""Hand-written safetensors reader and writer (numpy only), for the reference
and the fixture generator. bf16 is handled bit by bit: numpy has no bfloat16."""
import json
import os
import struct

import numpy as np

_NUMPY_TYPES = {"F32": np.float32, "F16": np.float16}


def to_storage(values, dtype):
    """float64 array -> (bytes, the float64 values the stored bytes decode to)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if dtype in _NUMPY_TYPES:
        stored = values.astype(_NUMPY_TYPES[dtype])
        return stored.tobytes(), stored.astype(np.float64)
    if dtype == "BF16":
        bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        halves = rounded.astype(np.uint16)
        return halves.tobytes(), _bf16_to_f64(halves)
    raise ValueError(f"unsupported dtype {dtype}")


def _bf16_to_f64(halves):
    return (halves.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def from_storage(raw, dtype, shape):
    if dtype in _NUMPY_TYPES:
        return np.frombuffer(raw, dtype=_NUMPY_TYPES[dtype]).astype(np.float64).reshape(shape)
    if dtype == "BF16":
        return _bf16_to_f64(np.frombuffer(raw, dtype=np.uint16)).reshape(shape)
    raise ValueError(f"unsupported dtype {dtype}")


def write_file(path, tensors):
    """tensors: {name: (dtype, shape, bytes)}, written in sorted name order."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data section 8-byte aligned, as the format suggests
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_file(path):
    """{name: float64 array} with the values exactly as stored."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        width = {"F32": 4, "F16": 2, "BF16": 2}[entry["dtype"]]
        if not 0 <= begin <= end <= len(data) - base or end - begin != width * int(np.prod(entry["shape"])):
            raise ValueError(f"{path}: tensor {name}: data_offsets {entry['data_offsets']} do not fit "
                             f"{entry['dtype']} {entry['shape']}")
        out[name] = from_storage(data[base + begin:base + end], entry["dtype"], entry["shape"])
    return out


def read_checkpoint(model_dir):
    """All tensors of model.safetensors, or of the shards listed in the index."""
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return read_file(single)
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        tensors = read_file(os.path.join(model_dir, shard))
        out.update({name: value for name, value in tensors.items() if weight_map.get(name) == shard})
    return out
