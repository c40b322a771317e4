"""Writes a random checkpoint of a real Hymba shape in the Hugging Face layout
(config.json, two safetensors shards + index, the tokenizer files), for
benchmarks and memory checks; it is never committed (3 GB at Hymba-1.5B).

  /usr/bin/python3 tools/bench/make_random_checkpoint.py -o /tmp/hymba-1.5b-random \
      [--model tests/data/hymba-1.5b] [--dtype BF16|F16|F32] [--seed 0]

The tensor inventory and initialisers are the fixture generator's, so the
activations stay in a realistic range; only numpy is needed."""
import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))

import hymba_ref  # noqa: E402
from make_fixtures import TOKENIZER_FILES, random_tensor, tensor_shapes  # noqa: E402
from safetensors_io import write_file  # noqa: E402

_NUMPY_TYPES = {"F32": np.float32, "F16": np.float16}


def storage_bytes(values, dtype):
    """float32-precision conversion: the float64 round trip of to_storage would need 12 GB here."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype in _NUMPY_TYPES:
        return values.astype(_NUMPY_TYPES[dtype]).tobytes()
    bits = values.view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, help="directory to create (must not exist)")
    parser.add_argument("--model", default=os.path.join(HERE, "..", "..", "tests", "data", "hymba-1.5b"),
                        help="directory with the config.json and tokenizer files to copy")
    parser.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=0,
                        help="keep only the first N layers (global layers and KV groups cut to match)")
    args = parser.parse_args()
    if os.path.exists(args.output):
        sys.exit(f"error: {args.output} already exists; choose a new directory")

    with open(os.path.join(args.model, "config.json")) as f:
        raw = json.load(f)
    raw["torch_dtype"] = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[args.dtype]
    if args.layers > 0:
        n = args.layers
        raw["num_hidden_layers"] = n
        raw["global_attn_idx"] = [i for i in raw.get("global_attn_idx", []) if i < n]
        if raw.get("kv_reuse_group"):
            groups = [[i for i in g if i < n] for g in raw["kv_reuse_group"]]
            raw["kv_reuse_group"] = [g for g in groups if len(g) > 1]
        for key in ("layer_type", "conv_dim"):
            if isinstance(raw.get(key), list):
                raw[key] = raw[key][:n]
            elif isinstance(raw.get(key), dict):
                raw[key] = {k: v for k, v in raw[key].items() if int(k) < n}
    c = hymba_ref.Config(raw)
    shapes = tensor_shapes(c, not raw.get("tie_word_embeddings", True))
    rng = np.random.default_rng(args.seed)

    os.makedirs(args.output)
    with open(os.path.join(args.output, "config.json"), "w") as f:
        json.dump(raw, f, indent=2, sort_keys=True)
        f.write("\n")
    for file in TOKENIZER_FILES:
        if os.path.exists(os.path.join(args.model, file)):
            shutil.copyfile(os.path.join(args.model, file), os.path.join(args.output, file))

    # Two shards, layers split in half, as the official checkpoint is stored.
    names = sorted(shapes)
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    halves = [[n for n in names if not n.startswith("model.layers.") or int(n.split(".")[2]) < c.layers // 2],
              [n for n in names if n.startswith("model.layers.") and int(n.split(".")[2]) >= c.layers // 2]]
    weight_map, total, done = {}, 0, 0
    for shard, members in zip(shard_names, halves):
        tensors = {}
        for name in members:
            shape, kind = shapes[name]
            tensors[name] = (args.dtype, shape, storage_bytes(random_tensor(rng, shape, kind), args.dtype))
            total += len(tensors[name][2])
            weight_map[name] = shard
            done += 1
            print(f"\r{done}/{len(names)} tensors, {total / 1e9:.2f} GB", end="", file=sys.stderr, flush=True)
        write_file(os.path.join(args.output, shard), tensors)
    print(file=sys.stderr)
    with open(os.path.join(args.output, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.output}: {len(names)} tensors, {total:,} bytes of {args.dtype}")


if __name__ == "__main__":
    main()
