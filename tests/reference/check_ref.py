"""Self-test of the float64 reference and of the committed fixtures.

  1. A second implementation written independently of hymba_ref.py: numpy,
     one token at a time with explicit caches (conv inputs, SSM state, the
     owners' K/V lists), the way an engine decodes, masks written out per key.
     It must agree with hymba_ref.forward on every fixture (float64, ~1e-12).
  2. The committed logits.npy are the reference's logits rounded to float32
     (within one float32 ulp).
  3. The semantics bite: dropping the meta tokens, widening the window by one
     (exactly the positions the rule predicts change), dropping the meta-prefix
     exception of the window, making every layer global, switching RoPE off or
     NTK scaling off all change the logits.
  4. The logits are non-degenerate (magnitude, variation over positions).
  5. safetensors_io: bf16 rounding equals torch's, write/read round trip,
     sharded == single-file reading.
  6. RoPE inv_freq of the real Hymba config equals the table of spec 3.8.

    /usr/bin/python3 tests/reference/check_ref.py       (exit status 1 on failure)
"""
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

import hymba_ref
import safetensors_io

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
FIXTURES = os.path.join(DATA, "fixtures")
FAILURES = []


def expect(condition, message):
    print(("ok    " if condition else "FAIL  ") + message)
    if not condition:
        FAILURES.append(message)


# ---------------------------------------------------------------- 1. step-by-step implementation

def step_model_logits(model_dir, tokens):
    """Independent float64 forward: token by token, caches, explicit loops over heads and keys."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    W = safetensors_io.read_checkpoint(model_dir)

    def opt(key, default):
        return default if cfg.get(key) is None else cfg[key]

    n_layers, hidden, heads = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = opt("num_key_value_heads", heads)
    d_inner = int(opt("mamba_expand", 2) * hidden)
    dqk, dv = hidden // heads, d_inner // heads
    d_state, d_conv = opt("mamba_d_state", 16), opt("mamba_d_conv", 4)
    dt_rank = opt("mamba_dt_rank", "auto")
    dt_rank = -(-hidden // 16) if dt_rank == "auto" else dt_rank
    eps = opt("rms_norm_eps", 1e-6)
    M = opt("num_memory_tokens", 0)
    window = cfg.get("sliding_window")
    globals_ = opt("global_attn_idx", [])
    act = opt("mlp_hidden_act", "silu")

    source = {}
    if cfg.get("kv_reuse_group"):
        for group in cfg["kv_reuse_group"]:
            for layer in group[1:]:
                source[layer] = group[0]
    elif opt("kv_reuse_every_i_layer", -1) > 0:
        every = cfg["kv_reuse_every_i_layer"]
        for layer in range(n_layers):
            if layer % every:
                source[layer] = layer - layer % every
    src = [source.get(layer, layer) for layer in range(n_layers)]

    inv_freq = None
    if opt("rope", False):
        base = float(opt("rope_theta", 10000.0))
        if opt("rope_type", "default") == "ntk":
            ratio = 2 * cfg["max_position_embeddings"] / cfg["orig_max_position_embeddings"] - 1
            base = base * ratio ** (dqk / (dqk - 2))
        # E2: float32, computed the way torch does at module construction.
        exps = torch.arange(0, dqk, 2, dtype=torch.int64).to(torch.float32) / dqk
        inv_freq = (1.0 / (base ** exps)).numpy().astype(np.float64)

    def norm(v, w):
        return w * v / math.sqrt(float(np.dot(v, v)) / v.size + eps)

    def silu(a):
        return a / (1.0 + np.exp(-a))

    def rope(vec, pos):  # vec [dqk], GPT-NeoX halves
        half = dqk // 2
        out = np.empty_like(vec)
        for d in range(dqk):
            angle = pos * inv_freq[d % half]
            partner = -vec[d + half] if d < half else vec[d - half]
            out[d] = vec[d] * math.cos(angle) + partner * math.sin(angle)
        return out

    def visible(layer, i, j):
        if j > i:
            return False
        if window is None or layer in globals_:
            return True
        return i - j <= window or j < M

    head = W["lm_head.weight"] if ("lm_head.weight" in W and not opt("tie_word_embeddings", False)) \
        else W["model.embed_tokens.weight"]
    conv_hist = [np.zeros((d_conv - 1, d_inner)) for _ in range(n_layers)]
    ssm = [np.zeros((d_inner, d_state)) for _ in range(n_layers)]
    kv_cache = {layer: [] for layer in range(n_layers) if src[layer] == layer}  # list of (K [kv,dqk], V [kv,dv])

    inputs = [W["model.memory_tokens"][m] for m in range(M)] + [W["model.embed_tokens.weight"][t] for t in tokens]
    logits = []
    for pos, x in enumerate(inputs):
        x = x.copy()
        for layer in range(n_layers):
            p = f"model.layers.{layer}."
            owner = src[layer] == layer
            u = norm(x, W[p + "input_layernorm.weight"])
            proj = W[p + "mamba.in_proj.weight"] @ u
            if p + "mamba.in_proj.bias" in W:
                proj = proj + W[p + "mamba.in_proj.bias"]
            kw, vw = kv_heads * dqk, kv_heads * dv
            expected_rows = hidden + (kw + vw if owner else 0) + 2 * d_inner
            assert proj.size == expected_rows, (p, proj.size, expected_rows)
            q, rest = proj[:hidden], proj[hidden:]
            if owner:
                k, v, rest = rest[:kw], rest[kw:kw + vw], rest[kw + vw:]
            xs, z = rest[:d_inner], rest[d_inner:]

            # SSM branch
            window_in = np.vstack([conv_hist[layer], xs[None, :]])  # oldest .. newest
            conv_hist[layer] = window_in[1:]
            cw = W[p + "mamba.conv1d.weight"][:, 0, :]
            xc = np.array([np.dot(cw[c], window_in[:, c]) for c in range(d_inner)])
            if p + "mamba.conv1d.bias" in W:
                xc = xc + W[p + "mamba.conv1d.bias"]
            xc = silu(xc)
            s = W[p + "mamba.x_proj.0.weight"] @ xc
            dt, Bv, Cv = s[:dt_rank], s[dt_rank:dt_rank + d_state], s[dt_rank + d_state:]
            if opt("mamba_inner_layernorms", True):
                dt = norm(dt, W[p + "mamba.dt_layernorm.weight"])
                Bv = norm(Bv, W[p + "mamba.B_layernorm.weight"])
                Cv = norm(Cv, W[p + "mamba.C_layernorm.weight"])
            a = W[p + "mamba.dt_proj.0.weight"] @ dt + W[p + "mamba.dt_proj.0.bias"]
            delta = np.array([ai if ai > 20 else math.log1p(math.exp(ai)) for ai in a])
            A = -np.exp(W[p + "mamba.A_log.0"])
            h = ssm[layer]
            for c in range(d_inner):
                h[c] = np.exp(delta[c] * A[c]) * h[c] + delta[c] * Bv * xc[c]
            y = h @ Cv + W[p + "mamba.D.0"] * xc
            ssm_out = y * silu(z)

            # attention branch
            qh = [q[i * dqk:(i + 1) * dqk] for i in range(heads)]
            if opt("kq_norm", "none") == "rms":
                qh = [norm(v_, W[p + "mamba.self_attn.q_norm.weight"]) for v_ in qh]
            if inv_freq is not None:
                qh = [rope(v_, pos) for v_ in qh]
            if owner:
                kh = [k[g * dqk:(g + 1) * dqk] for g in range(kv_heads)]
                if opt("kq_norm", "none") == "rms":
                    kh = [norm(v_, W[p + "mamba.self_attn.k_norm.weight"]) for v_ in kh]
                if inv_freq is not None:
                    kh = [rope(v_, pos) for v_ in kh]
                kv_cache[layer].append((np.array(kh), v.reshape(kv_heads, dv)))
            entries = kv_cache[src[layer]]
            assert len(entries) == pos + 1
            keys = [j for j in range(pos + 1) if visible(layer, pos, j)]
            attn = np.zeros(heads * dv)
            for hq in range(heads):
                g = hq // (heads // kv_heads)
                scores = np.array([np.dot(qh[hq], entries[j][0][g]) / math.sqrt(dqk) for j in keys])
                prob = np.exp(scores - scores.max())
                prob /= prob.sum()
                attn[hq * dv:(hq + 1) * dv] = sum(pj * entries[j][1][g] for pj, j in zip(prob, keys))

            fused = 0.5 * (norm(attn, W[p + "mamba.pre_avg_layernorm1.weight"])
                           + norm(ssm_out, W[p + "mamba.pre_avg_layernorm2.weight"]))
            mix = W[p + "mamba.out_proj.weight"] @ fused
            if p + "mamba.out_proj.bias" in W:
                mix = mix + W[p + "mamba.out_proj.bias"]
            x = x + mix
            if cfg["intermediate_size"] > 0:
                m = norm(x, W[p + "pre_moe_layernorm.weight"])
                up = W[p + "moe.experts.0.up_proj.weight"] @ m
                if act == "silu":
                    hid = silu(W[p + "moe.experts.0.gate_proj.weight"] @ m) * up
                else:
                    hid = np.maximum(up, 0.0) ** 2
                x = x + W[p + "moe.experts.0.down_proj.weight"] @ hid
        if pos >= M:
            logits.append(head @ norm(x, W["model.final_layernorm.weight"]))
    return np.array(logits)


# ---------------------------------------------------------------- helpers

def fixture_names():
    return sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))


def load_fixture(name):
    directory = os.path.join(FIXTURES, name)
    with open(os.path.join(directory, "tokens.json")) as f:
        tokens = json.load(f)
    with open(os.path.join(directory, "config.json")) as f:
        raw = json.load(f)
    return directory, raw, tokens


def ref_with(raw, weights, tokens):
    """hymba_ref logits for a modified config / weight set."""
    c = hymba_ref.Config(raw)
    return hymba_ref.forward((c, weights), tokens)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / (1 + np.max(np.abs(b))))


# ---------------------------------------------------------------- checks

def check_fixture(name):
    directory, raw, tokens = load_fixture(name)
    model = hymba_ref.load_model(directory)
    ref, hidden = hymba_ref.forward(model, tokens, return_hidden=True)
    c, w = model
    expect(ref.shape == (len(tokens), raw["vocab_size"]) and len(hidden) == c.layers + 1
           and hidden[0].shape == (c.meta + len(tokens), c.hidden), f"{name}: shapes")

    stored = np.load(os.path.join(directory, "logits.npy"))
    # float32 rounding of float64 values that can differ in the last bits with the BLAS summation order.
    ulps = np.abs(stored.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    expect(stored.dtype == np.float32 and stored.shape == ref.shape and ulps.max() <= 1.0,
           f"{name}: logits.npy == float32(reference) within 1 ulp ({int((stored != ref.astype(np.float32)).sum())}"
           " entries not the nearest float32)")

    step = step_model_logits(directory, tokens)
    expect(rel(step, ref) < 1e-10, f"{name}: token-by-token implementation agrees ({rel(step, ref):.1e})")

    spread = ref.std(axis=0).mean()
    argmaxes = len(set(ref.argmax(-1).tolist()))  # at most the vocabulary, whatever the length
    expect(1 < np.abs(ref).max() < 50 and spread > 0.1 and argmaxes > min(len(tokens), ref.shape[-1]) // 4,
           f"{name}: non-degenerate (max |logit| {np.abs(ref).max():.2f}, mean std over positions {spread:.2f}, "
           f"{argmaxes} distinct argmax of {len(tokens)})")

    if c.meta > 0:
        no_meta = dict(raw, num_memory_tokens=0)
        weights = {k: v for k, v in w.items() if k != "model.memory_tokens"}
        expect(rel(ref_with(no_meta, weights, tokens), ref) > 1e-2, f"{name}: meta tokens change the logits")
        zero_meta = dict(w, **{"model.memory_tokens": torch.zeros_like(w["model.memory_tokens"])})
        expect(rel(ref_with(raw, zero_meta, tokens), ref) > 1e-2, f"{name}: meta token values change the logits")

    if c.window is not None:
        W, M = c.window, c.meta
        wider = ref_with(dict(raw, sliding_window=W + 1), w, tokens)
        # Query i (absolute) loses key i-W-1 iff that key is a text-or-meta key not covered by the prefix rule,
        # i.e. i - W - 1 >= M; text position t is affected iff some absolute index <= M + t is.
        changed = [not np.array_equal(wider[t], ref[t]) for t in range(len(tokens))]
        predicted = [M + t - W - 1 >= M for t in range(len(tokens))]
        has_sliding = any(not c.is_global(layer) for layer in range(c.layers))
        expect(has_sliding and changed == predicted and any(changed),
               f"{name}: window W+1 changes exactly text positions >= W+1 ({sum(changed)} of {len(tokens)})")
        all_global = ref_with(dict(raw, global_attn_idx=list(range(c.layers))), w, tokens)
        expect(rel(all_global, ref) > 1e-3, f"{name}: sliding-window layers differ from global ones")
        if M > 0:
            original = hymba_ref.attention_mask

            def no_prefix(cfg, layer, n):
                i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
                return (j <= i) if cfg.is_global(layer) else (j <= i) & (i - j <= cfg.window)
            hymba_ref.attention_mask = no_prefix
            try:
                without_prefix = hymba_ref.forward(model, tokens)
            finally:
                hymba_ref.attention_mask = original
            # Meta keys fall out of the window only for absolute queries i > W, i.e. from i = W + 1 on.
            expect(rel(without_prefix, ref) > 1e-3, f"{name}: the meta-prefix exception of the window matters")

    if c.rope:
        expect(rel(ref_with(dict(raw, rope=False), w, tokens), ref) > 1e-3, f"{name}: RoPE changes the logits")
        if c.rope_type == "ntk":
            expect(rel(ref_with(dict(raw, rope_type="default"), w, tokens), ref) > 1e-4,
                   f"{name}: NTK scaling changes the logits")


def check_safetensors():
    rng = np.random.RandomState(7)
    values = np.concatenate([
        rng.normal(0, 1, 2000), rng.normal(0, 1e4, 200), rng.normal(0, 1e-30, 100),
        np.array([0.0, -0.0, 1.0, -1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -7 + 2 ** -9, 65504.0, 3.0e38,
                  1e-40, -1e-42, 2 ** -126, np.float32(np.pi)]),
    ])
    raw, decoded = safetensors_io.to_storage(values, "BF16")
    mine = np.frombuffer(raw, dtype=np.uint16)
    theirs = torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    expect(np.array_equal(mine, theirs), "bf16 rounding == torch float32 -> bfloat16 (round to nearest even)")
    expect(np.array_equal(decoded, torch.from_numpy(theirs.view(np.int16)).view(torch.bfloat16).double().numpy()),
           "bf16 decoding == torch")

    with tempfile.TemporaryDirectory() as scratch:
        tensors, expected = {}, {}
        for name, dtype, shape in [("b", "F16", (3, 5)), ("a", "BF16", (7,)), ("c.w", "F32", (2, 1, 4)),
                                   ("z", "BF16", (0,))]:
            data, stored = safetensors_io.to_storage(rng.normal(0, 3, shape), dtype)
            tensors[name], expected[name] = (dtype, shape, data), stored
        path = os.path.join(scratch, "model.safetensors")
        safetensors_io.write_file(path, tensors)
        back = safetensors_io.read_file(path)
        expect(set(back) == set(expected) and all(np.array_equal(back[k], expected[k]) and back[k].dtype == np.float64
                                                 for k in expected), "safetensors write/read round trip")
        with open(path, "rb") as f:
            blob = f.read()
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        offsets = [header[k]["data_offsets"] for k in sorted(k for k in header if k != "__metadata__")]
        contiguous = offsets[0][0] == 0 and all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
        expect(contiguous and offsets[-1][1] == len(blob) - 8 - n and header["__metadata__"] == {"format": "pt"},
               "safetensors layout: sorted, packed, no gaps, metadata")

    sharded = os.path.join(FIXTURES, "sharded_mixed")
    if os.path.isdir(sharded):
        with open(os.path.join(sharded, "model.safetensors.index.json")) as f:
            index = json.load(f)
        merged = {}
        for shard in sorted(set(index["weight_map"].values())):
            merged.update(safetensors_io.read_file(os.path.join(sharded, shard)))
        via_index = safetensors_io.read_checkpoint(sharded)
        expect(set(via_index) == set(index["weight_map"]) == set(merged)
               and all(np.array_equal(via_index[k], merged[k]) for k in merged),
               "sharded checkpoint: index covers every tensor once")


def check_inv_freq():
    with open(os.path.join(DATA, "hymba-1.5b", "config.json")) as f:
        c = hymba_ref.Config(json.load(f))
    table = [1.0, 0.70426935, 0.49599531, 0.34931427, 0.24601132, 0.17325823, 0.12202046, 0.085935265,
             0.060521569, 0.042623486, 0.030018415, 0.021141047, 0.014888993, 0.010485860, 0.0073848697,
             0.0052009369, 0.0036628607, 0.0025796401, 0.0018167617, 0.0012794894, 0.00090110512, 0.00063462072,
             0.00044694392, 0.00031476890, 0.00022168206, 0.00015612389, 0.00010995326, 7.7436707e-05,
             5.4536296e-05, 3.8408241e-05, 2.7049748e-05, 1.9050307e-05]
    ours = hymba_ref.rope_inv_freq(c).numpy()
    expect(np.allclose(ours, table, rtol=2e-7, atol=0) and np.array_equal(ours, ours.astype(np.float32)),
           "Hymba-1.5B NTK inv_freq == spec 3.8 table, values exactly float32")


def main():
    check_inv_freq()
    check_safetensors()
    for name in fixture_names():
        check_fixture(name)
    print(f"{len(FAILURES)} failure(s)")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
