"""Writes small random Hymba checkpoints in the Hugging Face layout, with the
float64 reference's logits, to tests/data/fixtures/<name>/:
  config.json, model.safetensors (or shards + index), tokens.json, logits.npy.
Deterministic (numpy RandomState per fixture). --check regenerates into a
temporary directory and compares with the committed files.

Run with Debian's /usr/bin/python3."""
import argparse
import filecmp
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np

import hymba_ref
from safetensors_io import to_storage, write_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
REAL = os.path.join(DATA, "hymba-1.5b")
TOKENIZER_FILES = ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "generation_config.json"]

BASE_CONFIG = {
    "architectures": ["HymbaForCausalLM"], "model_type": "hymba", "attention_dropout": 0.0,
    "attn_hidden_size": -1, "kq_head_dim": -1, "v_head_dim": -1, "attn_implementation": "flex",
    "attn_implementation_new": "flex", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    "calc_logits_for_entire_prompt": False, "hidden_act": "silu", "initializer_range": 0.02,
    "kv_weight_reuse": False, "memory_tokens_interspersed_every": 0, "num_experts": 1,
    "num_experts_per_tok": 1, "num_mamba": 1, "output_router_logits": False, "rms_norm_eps": 1e-6,
    "router_aux_loss_coef": 0.001, "torch_dtype": "bfloat16", "transformers_version": "4.44.0",
    "use_cache": False, "use_mamba_kernels": True, "mamba_expand": 2, "mamba_conv_bias": True,
    "mamba_proj_bias": False, "mamba_inner_layernorms": True, "mamba_dt_rank": "auto",
    "mamba_d_state": 4, "mamba_d_conv": 4, "kq_norm": "none", "rope": True, "rope_theta": 10000.0,
    "rope_type": "ntk", "kv_reuse_every_i_layer": -1, "kv_reuse_group": None, "global_attn_idx": None,
    "sliding_window": None, "mlp_hidden_act": "silu", "tie_word_embeddings": True,
    "max_position_embeddings": 256, "orig_max_position_embeddings": 64, "seq_length": 256,
}

# name -> (config overrides, dtype rule, number of tokens, number of shards)
FIXTURES = {
    # Hymba-like: meta tokens, window much shorter than the sequence, globals at both ends, pairs.
    "swa_meta_bf16": (dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=6,
                           num_attention_heads=4, num_key_value_heads=2, global_attn_idx=[0, 5],
                           kv_reuse_group=[[1, 2], [3, 4]], num_memory_tokens=8, sliding_window=6),
                      "BF16", 40, 1),
    # Group of three with a GLOBAL consumer of a sliding producer (E6), GQA 3, kq_norm, relu2, untied.
    "groups3_f32_untied": (dict(vocab_size=200, hidden_size=24, intermediate_size=40, num_hidden_layers=5,
                                num_attention_heads=6, num_key_value_heads=2, global_attn_idx=[2],
                                kv_reuse_group=[[0, 1, 2], [3, 4]], num_memory_tokens=5, sliding_window=4,
                                rope_type=None, rope_theta=500.0, kq_norm="rms", mamba_dt_rank=3,
                                mamba_d_state=8, mamba_d_conv=3, mlp_hidden_act="relu2",
                                tie_word_embeddings=False),
                           "F32", 33, 1),
    # kv_reuse_every_i_layer, no window, no meta, no RoPE, no inner norms, proj bias, no conv bias, no MLP.
    "every_i_f16_noswa": (dict(vocab_size=128, hidden_size=16, intermediate_size=0, num_hidden_layers=6,
                               num_attention_heads=2, num_key_value_heads=2, kv_reuse_every_i_layer=3,
                               num_memory_tokens=0, rope=False, mamba_inner_layernorms=False,
                               mamba_conv_bias=False, mamba_proj_bias=True, mamba_d_conv=2),
                          "F16", 30, 1),
    # Shards with mixed dtypes; MQA (GQA 5); global consumer of a sliding producer and the reverse;
    # more meta tokens than the window.
    "sharded_mixed": (dict(vocab_size=300, hidden_size=20, intermediate_size=36, num_hidden_layers=4,
                           num_attention_heads=5, num_key_value_heads=1, global_attn_idx=[1, 2],
                           kv_reuse_group=[[0, 1], [2, 3]], num_memory_tokens=16, sliding_window=3,
                           rope_type="default"),
                      "MIXED", 45, 3),
    # Long enough that attention runs over several of the engine's ranges of
    # 256 keys, in prefill and in decode: two global layers (a global producer
    # read by a sliding consumer, and the reverse) and a sliding-only owner
    # whose ring (meta + 301 slots) crosses a 256-slot block and wraps twice.
    "long_context_f32": (dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=5,
                              num_attention_heads=4, num_key_value_heads=2, global_attn_idx=[0, 3],
                              kv_reuse_group=[[0, 1], [2, 3]], num_memory_tokens=8, sliding_window=300,
                              max_position_embeddings=1024, orig_max_position_embeddings=256,
                              seq_length=1024),
                         "F32", 700, 1),
    # The real tokenizer and vocabulary, 128 meta tokens, real RoPE scaling.
    "real_tokenizer_bf16": (dict(vocab_size=32001, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                 num_attention_heads=2, num_key_value_heads=1, global_attn_idx=[0],
                                 kv_reuse_group=[[1, 2]], num_memory_tokens=128, sliding_window=16,
                                 max_position_embeddings=8192, orig_max_position_embeddings=2048,
                                 mamba_d_state=16, seq_length=8192),
                            "BF16", 20, 1),
}

REAL_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs into the forest "
             "where the old oak trees whisper stories about winters long past and rivers that "
             "never freeze. Nobody in the village remembers who planted them, but every child "
             "knows the song about the fox and the seven silver bells.")


def storage_type(rule, name, shape):
    if rule != "MIXED":
        return rule
    if "conv1d" in name:
        return "F16"
    if len(shape) == 2 and "A_log" not in name and "memory_tokens" not in name:
        return "BF16"
    return "F32"


def tensor_shapes(c, untied):
    """Every tensor of spec 2.2 for this config, with its initialiser kind."""
    shapes = {"model.embed_tokens.weight": ([c.vocab_size, c.hidden], "embed"),
              "model.final_layernorm.weight": ([c.hidden], "norm")}
    if c.meta > 0:
        shapes["model.memory_tokens"] = ([c.meta, c.hidden], "embed")
    if untied:
        shapes["lm_head.weight"] = ([c.vocab_size, c.hidden], "matrix")
    kw, vw = c.kv_heads * c.dqk, c.kv_heads * c.dv
    for layer in range(c.layers):
        p = f"model.layers.{layer}."
        rows = c.hidden + (kw + vw if c.kv_source[layer] == layer else 0) + 2 * c.d_inner
        shapes[p + "input_layernorm.weight"] = ([c.hidden], "norm")
        shapes[p + "mamba.in_proj.weight"] = ([rows, c.hidden], "matrix")
        if c.proj_bias:
            shapes[p + "mamba.in_proj.bias"] = ([rows], "bias")
            shapes[p + "mamba.out_proj.bias"] = ([c.hidden], "bias")
        shapes[p + "mamba.conv1d.weight"] = ([c.d_inner, 1, c.d_conv], "conv")
        if c.conv_bias:
            shapes[p + "mamba.conv1d.bias"] = ([c.d_inner], "bias")
        shapes[p + "mamba.x_proj.0.weight"] = ([c.dt_rank + 2 * c.d_state, c.d_inner], "matrix")
        shapes[p + "mamba.dt_proj.0.weight"] = ([c.d_inner, c.dt_rank], "matrix")
        shapes[p + "mamba.dt_proj.0.bias"] = ([c.d_inner], "dt_bias")
        shapes[p + "mamba.A_log.0"] = ([c.d_inner, c.d_state], "a_log")
        shapes[p + "mamba.D.0"] = ([c.d_inner], "norm")
        if c.inner_norms:
            shapes[p + "mamba.dt_layernorm.weight"] = ([c.dt_rank], "norm")
            shapes[p + "mamba.B_layernorm.weight"] = ([c.d_state], "norm")
            shapes[p + "mamba.C_layernorm.weight"] = ([c.d_state], "norm")
        if c.kq_norm:  # HF builds both norms in every layer
            shapes[p + "mamba.self_attn.q_norm.weight"] = ([c.dqk], "norm")
            shapes[p + "mamba.self_attn.k_norm.weight"] = ([c.dqk], "norm")
        shapes[p + "mamba.pre_avg_layernorm1.weight"] = ([c.d_inner], "norm")
        shapes[p + "mamba.pre_avg_layernorm2.weight"] = ([c.d_inner], "norm")
        shapes[p + "mamba.out_proj.weight"] = ([c.hidden, c.d_inner], "matrix")
        if c.intermediate > 0:
            shapes[p + "pre_moe_layernorm.weight"] = ([c.hidden], "norm")
            if c.mlp_act == "silu":
                shapes[p + "moe.experts.0.gate_proj.weight"] = ([c.intermediate, c.hidden], "matrix")
            shapes[p + "moe.experts.0.up_proj.weight"] = ([c.intermediate, c.hidden], "matrix")
            shapes[p + "moe.experts.0.down_proj.weight"] = ([c.hidden, c.intermediate], "matrix")
    return shapes


def random_tensor(rng, shape, kind):
    if kind == "matrix":
        return rng.normal(0.0, 1.0 / math.sqrt(shape[-1]), shape)
    if kind == "embed":
        return rng.normal(0.0, 1.0, shape)
    if kind == "norm":
        return 1.0 + 0.1 * rng.normal(0.0, 1.0, shape)
    if kind == "bias":
        return 0.1 * rng.normal(0.0, 1.0, shape)
    if kind == "conv":
        return rng.normal(0.0, 1.0 / math.sqrt(shape[-1]), shape)
    if kind == "a_log":
        return np.log(np.arange(1, shape[1] + 1, dtype=np.float64))[None, :] + 0.1 * rng.normal(0.0, 1.0, shape)
    if kind == "dt_bias":  # inverse softplus of dt drawn log-uniformly in [1e-3, 1e-1], as Mamba initialises
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), shape))
        return dt + np.log(-np.expm1(-dt))
    raise ValueError(kind)


def fixture_tokens(name, vocab_size, count, rng):
    if name == "real_tokenizer_bf16":
        import sentencepiece
        ids = sentencepiece.SentencePieceProcessor(model_file=os.path.join(REAL, "tokenizer.model")).encode(REAL_TEXT)
        assert len(ids) >= count, len(ids)
        return [int(i) for i in ids[:count]]
    return [int(i) for i in rng.randint(0, vocab_size, count)]


def write_fixture(name, out_dir):
    overrides, rule, count, shards = FIXTURES[name]
    raw = dict(BASE_CONFIG)
    raw.update(overrides)
    # Fields the official config.json carries that follow from the others.
    d_inner = int(raw["mamba_expand"] * raw["hidden_size"])
    raw["layer_type"] = ["h"] * raw["num_hidden_layers"]
    raw["conv_dim"] = {str(layer): d_inner for layer in range(raw["num_hidden_layers"])}
    raw["v_head_dim"] = d_inner // raw["num_attention_heads"]
    raw["torch_dtype"] = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "MIXED": "bfloat16"}[rule]
    seed = sum(ord(ch) for ch in name)
    rng = np.random.RandomState(seed)
    c = hymba_ref.Config(raw)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(raw, f, indent=2, sort_keys=True)  # sorted, as transformers writes it
        f.write("\n")

    tensors = {}
    for tensor_name, (shape, kind) in sorted(tensor_shapes(c, not raw["tie_word_embeddings"]).items()):
        dtype = storage_type(rule, tensor_name, shape)
        data, _ = to_storage(random_tensor(rng, shape, kind), dtype)
        tensors[tensor_name] = (dtype, shape, data)
    if shards == 1:
        write_file(os.path.join(out_dir, "model.safetensors"), tensors)
    else:
        names = sorted(tensors)
        weight_map = {}
        for index in range(shards):
            shard = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[index::shards]}
            write_file(os.path.join(out_dir, shard), part)
            weight_map.update({n: shard for n in part})
        total = sum(len(t[2]) for t in tensors.values())
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
            f.write("\n")
    if name == "real_tokenizer_bf16":
        for file in TOKENIZER_FILES:
            shutil.copyfile(os.path.join(REAL, file), os.path.join(out_dir, file))

    tokens = fixture_tokens(name, raw["vocab_size"], count, rng)
    with open(os.path.join(out_dir, "tokens.json"), "w") as f:
        json.dump(tokens, f)
        f.write("\n")
    # Logits from the files as written, so the reference sees the stored (rounded) weights.
    logits = hymba_ref.forward(hymba_ref.load_model(out_dir), tokens)
    np.save(os.path.join(out_dir, "logits.npy"), logits.astype(np.float32))
    return logits


def check(committed_root):
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in FIXTURES:
            fresh, committed = os.path.join(scratch, name), os.path.join(committed_root, name)
            write_fixture(name, fresh)
            problems = []
            for file in sorted(os.listdir(fresh)):
                if file == "logits.npy":
                    continue
                if not os.path.exists(os.path.join(committed, file)):
                    problems.append(f"{file} missing")
                elif not filecmp.cmp(os.path.join(fresh, file), os.path.join(committed, file), shallow=False):
                    problems.append(f"{file} differs")
            extra = set(os.listdir(committed)) - set(os.listdir(fresh)) if os.path.isdir(committed) else set()
            problems += [f"unexpected {file}" for file in sorted(extra)]
            worst = float("nan")
            if os.path.exists(os.path.join(committed, "logits.npy")):
                ref = np.load(os.path.join(fresh, "logits.npy")).astype(np.float64)
                old = np.load(os.path.join(committed, "logits.npy")).astype(np.float64)
                if ref.shape != old.shape:
                    problems.append(f"logits shape {old.shape} != {ref.shape}")
                else:
                    worst = float(np.max(np.abs(ref - old)) / (1e-5 * (1 + np.max(np.abs(ref)))))
                    if worst > 1:
                        problems.append(f"logits differ ({worst:.2f} of the 1e-5 tolerance)")
            failures += bool(problems)
            print(f"{name}: {'ok' if not problems else 'MISMATCH: ' + '; '.join(problems)}"
                  f" (logits drift {worst:.3f} of tolerance)")
    print(f"{len(FIXTURES) - failures} passed, {failures} failed")
    return failures == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(DATA, "fixtures"))
    parser.add_argument("--check", action="store_true", help="compare a fresh generation with --out")
    args = parser.parse_args()
    if args.check:
        sys.exit(0 if check(args.out) else 1)
    for name in FIXTURES:
        target = os.path.join(args.out, name)
        shutil.rmtree(target, ignore_errors=True)
        logits = write_fixture(name, target)
        print(f"{name}: {logits.shape[0]} tokens, |logit| max {np.abs(logits).max():.2f}, "
              f"std over positions {logits.std(0).mean():.2f}")


if __name__ == "__main__":
    main()
