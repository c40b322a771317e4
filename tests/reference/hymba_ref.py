"""Float64 reference of the Hymba forward pass (HYMBA_SPEC.md section 3 with
the engine semantics of section E). Whole-sequence, no cache, no shortcuts:
the yardstick the C++ engine is judged against.

Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy)."""
import json
import math
import os

import numpy as np
import torch

from safetensors_io import read_checkpoint

torch.set_default_dtype(torch.float64)


class Config:
    """config.json with the official HymbaConfig defaults for absent fields.
    Values the engine refuses (spec E10) raise ValueError naming the field."""

    def __init__(self, raw):
        get = lambda key, default=None: default if raw.get(key) is None else raw[key]

        def refuse(field, why):
            raise ValueError(f"config.json: {field} = {raw.get(field)!r} is not supported ({why})")

        self.vocab_size = raw["vocab_size"]
        self.hidden = raw["hidden_size"]
        self.intermediate = raw["intermediate_size"]
        self.layers = raw["num_hidden_layers"]
        self.heads = raw["num_attention_heads"]
        self.kv_heads = get("num_key_value_heads", self.heads)
        self.d_inner = int(get("mamba_expand", 2) * self.hidden)
        if self.hidden % self.heads or self.d_inner % self.heads or self.heads % self.kv_heads:
            refuse("num_attention_heads", "hidden, d_inner and heads must divide evenly, heads % kv_heads == 0")
        self.dqk = self.hidden // self.heads
        self.dv = self.d_inner // self.heads
        if get("attn_hidden_size", -1) not in (-1, self.hidden):
            refuse("attn_hidden_size", "only -1 or hidden_size")
        if get("kq_head_dim", -1) not in (-1, self.dqk):
            refuse("kq_head_dim", "only -1 or hidden_size / num_attention_heads")
        self.d_state = get("mamba_d_state", 16)
        self.d_conv = get("mamba_d_conv", 4)
        rank = get("mamba_dt_rank", "auto")
        self.dt_rank = math.ceil(self.hidden / 16) if rank == "auto" else int(rank)
        self.conv_bias = get("mamba_conv_bias", True)
        self.proj_bias = get("mamba_proj_bias", False)
        self.inner_norms = get("mamba_inner_layernorms", True)
        if get("hidden_act", "silu") not in ("silu", "swish"):
            refuse("hidden_act", "the SSM convolution takes silu")
        self.meta = get("num_memory_tokens", 0)
        if get("memory_tokens_interspersed_every", 0) > 0:
            refuse("memory_tokens_interspersed_every", "only 0")
        if get("num_experts", 1) != 1:
            refuse("num_experts", "only 1")
        if any(t != "h" for t in get("layer_type", [])):
            refuse("layer_type", "only hybrid 'h' layers")
        self.window = raw.get("sliding_window")  # None: every layer is global
        self.global_idx = set(get("global_attn_idx", []))
        self.rope = get("rope", False)
        self.rope_type = get("rope_type", "default")
        if self.rope_type not in ("default", "ntk"):
            refuse("rope_type", "null, 'default' or 'ntk'")
        self.rope_theta = float(get("rope_theta", 10000.0))
        self.max_pos = get("max_position_embeddings", 262144)
        self.orig_max_pos = raw.get("orig_max_position_embeddings")
        if self.rope and self.rope_type == "ntk" and not self.orig_max_pos:
            refuse("orig_max_position_embeddings", "rope_type 'ntk' needs it")
        if self.rope and self.rope_type == "ntk" and 2 * self.max_pos <= self.orig_max_pos:
            refuse("max_position_embeddings", "more than half of orig_max_position_embeddings (a positive NTK base)")
        kq_norm = get("kq_norm", "none")
        if kq_norm not in ("none", "rms"):
            refuse("kq_norm", "'none' or 'rms'")
        self.kq_norm = kq_norm == "rms"
        self.mlp_act = get("mlp_hidden_act", "silu")
        if self.mlp_act not in ("silu", "relu2"):
            refuse("mlp_hidden_act", "'silu' or 'relu2'")
        self.eps = get("rms_norm_eps", 1e-6)
        self.tie = get("tie_word_embeddings", False)
        # kv_source[l]: the layer whose post-RoPE K/V layer l attends over (itself for an owner).
        self.kv_source = list(range(self.layers))
        groups = raw.get("kv_reuse_group")
        every = get("kv_reuse_every_i_layer", -1)
        if groups:  # first = producer, rest = consumers; groups win over kv_reuse_every_i_layer
            for group in groups:
                for consumer in group[1:]:
                    self.kv_source[consumer] = group[0]
        elif every > 0:
            self.kv_source = [layer // every * every for layer in range(self.layers)]

    def is_global(self, layer):
        return self.window is None or layer in self.global_idx


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = Config(json.load(f))
    weights = {name: torch.from_numpy(value) for name, value in read_checkpoint(model_dir).items()}
    return config, weights


def rms_norm(x, weight, eps):
    y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight


def silu(x):
    return x * torch.sigmoid(x)


def softplus(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))


def rope_inv_freq(c):
    """E2: the f32 values the official constructor computes, as float64."""
    base = c.rope_theta
    if c.rope_type == "ntk":
        factor = 2
        base = base * ((factor * c.max_pos / c.orig_max_pos) - (factor - 1)) ** (c.dqk / (c.dqk - 2))
    exponents = torch.arange(0, c.dqk, 2, dtype=torch.int64).float() / c.dqk
    return (1.0 / (base ** exponents.to(torch.float32))).to(torch.float32).double()  # angles in float64


def apply_rope(x, positions, inv_freq):
    """x: [B, N, heads, d]; GPT-NeoX rotate-half over the whole head."""
    angles = positions[:, None].to(inv_freq.dtype) * inv_freq[None, :]  # [N, d/2]
    cos = torch.cat([angles.cos(), angles.cos()], -1)[None, :, None, :].to(x.dtype)
    sin = torch.cat([angles.sin(), angles.sin()], -1)[None, :, None, :].to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def attention_mask(c, layer, n):
    """E3: key j visible to query i iff j <= i and (global, or i - j <= W, or j < M)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    visible = j <= i
    if not c.is_global(layer):
        visible = visible & ((i - j <= c.window) | (j < c.meta))
    return visible


def ssm_branch(c, w, p, xs, z):
    """Causal depthwise conv + SiLU, x_proj, dt/B/C norms, dt_proj, selective scan, gate.
    xs, z: [B, n, d_inner]."""
    batch, n, _ = xs.shape
    conv_w = w[p + "mamba.conv1d.weight"][:, 0, :]  # [d_inner, d_conv]; tap d_conv-1 is the newest input
    padded = torch.cat([xs.new_zeros(batch, c.d_conv - 1, c.d_inner), xs], 1)
    xc = sum(padded[:, k:k + n, :] * conv_w[:, k] for k in range(c.d_conv))
    if c.conv_bias:
        xc = xc + w[p + "mamba.conv1d.bias"]
    xc = silu(xc)

    params = xc @ w[p + "mamba.x_proj.0.weight"].T
    dt, B, C = torch.split(params, [c.dt_rank, c.d_state, c.d_state], -1)
    if c.inner_norms:
        dt = rms_norm(dt, w[p + "mamba.dt_layernorm.weight"], c.eps)
        B = rms_norm(B, w[p + "mamba.B_layernorm.weight"], c.eps)
        C = rms_norm(C, w[p + "mamba.C_layernorm.weight"], c.eps)
    delta = softplus(dt @ w[p + "mamba.dt_proj.0.weight"].T + w[p + "mamba.dt_proj.0.bias"])  # [B, n, d_inner]
    A = -torch.exp(w[p + "mamba.A_log.0"])  # [d_inner, d_state]
    D = w[p + "mamba.D.0"]
    # h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t, from h = 0; y_t = C_t . h_t + D x_t.
    decay = torch.exp(delta[..., None] * A)  # [B, n, d_inner, d_state]
    drive = delta[..., None] * B[:, :, None, :] * xc[..., None]
    h = xs.new_zeros(batch, c.d_inner, c.d_state)
    states = []
    for decay_t, drive_t in zip(decay.unbind(1), drive.unbind(1)):  # unbind: cheap under autograd
        h = decay_t * h + drive_t
        states.append(h)
    y = (torch.stack(states, 1) * C[:, :, None, :]).sum(-1) + D * xc
    return y * silu(z)


def forward_batch(c, w, tokens):
    """tokens: int64 [B, T]. Returns (logits [B, T, vocab], hidden states after each layer)."""
    x = w["model.embed_tokens.weight"][tokens]
    batch = x.shape[0]
    if c.meta > 0:
        x = torch.cat([w["model.memory_tokens"][None].expand(batch, -1, -1), x], 1)
    n = x.shape[1]
    positions = torch.arange(n)
    inv_freq = rope_inv_freq(c) if c.rope else None
    kv = {}  # owner layer -> (K after RoPE [B, n, kv_heads, dqk], V [B, n, kv_heads, dv])
    hidden_states = [x]
    group = c.heads // c.kv_heads
    for layer in range(c.layers):
        p = f"model.layers.{layer}."
        owner = c.kv_source[layer] == layer
        u = rms_norm(x, w[p + "input_layernorm.weight"], c.eps)
        proj = u @ w[p + "mamba.in_proj.weight"].T
        if c.proj_bias:
            proj = proj + w[p + "mamba.in_proj.bias"]
        kw, vw = c.kv_heads * c.dqk, c.kv_heads * c.dv
        if owner:
            q, k, v, xs, z = torch.split(proj, [c.hidden, kw, vw, c.d_inner, c.d_inner], -1)
        else:
            q, xs, z = torch.split(proj, [c.hidden, c.d_inner, c.d_inner], -1)

        ssm_out = ssm_branch(c, w, p, xs, z)

        q = q.reshape(batch, n, c.heads, c.dqk)
        if c.kq_norm:
            q = rms_norm(q, w[p + "mamba.self_attn.q_norm.weight"], c.eps)
        if c.rope:
            q = apply_rope(q, positions, inv_freq)
        if owner:
            k = k.reshape(batch, n, c.kv_heads, c.dqk)
            if c.kq_norm:
                k = rms_norm(k, w[p + "mamba.self_attn.k_norm.weight"], c.eps)
            if c.rope:
                k = apply_rope(k, positions, inv_freq)
            kv[layer] = (k, v.reshape(batch, n, c.kv_heads, c.dv))
        keys, values = kv[c.kv_source[layer]]
        keys = keys.repeat_interleave(group, 2)  # query head h reads kv head h // group
        values = values.repeat_interleave(group, 2)
        scores = torch.einsum("bihd,bjhd->bhij", q, keys) / math.sqrt(c.dqk)
        scores = scores.masked_fill(~attention_mask(c, layer, n)[None, None], float("-inf"))
        attn_out = torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, -1), values).reshape(batch, n, c.heads * c.dv)

        fused = (rms_norm(attn_out, w[p + "mamba.pre_avg_layernorm1.weight"], c.eps)
                 + rms_norm(ssm_out, w[p + "mamba.pre_avg_layernorm2.weight"], c.eps)) / 2
        mixed = fused @ w[p + "mamba.out_proj.weight"].T
        if c.proj_bias:
            mixed = mixed + w[p + "mamba.out_proj.bias"]
        x = x + mixed

        if c.intermediate > 0:
            m = rms_norm(x, w[p + "pre_moe_layernorm.weight"], c.eps)
            up = m @ w[p + "moe.experts.0.up_proj.weight"].T
            if c.mlp_act == "silu":
                act = silu(m @ w[p + "moe.experts.0.gate_proj.weight"].T) * up
            else:  # relu2
                act = torch.relu(up) ** 2
            x = x + act @ w[p + "moe.experts.0.down_proj.weight"].T
        hidden_states.append(x)

    x = rms_norm(x, w["model.final_layernorm.weight"], c.eps)[:, c.meta:]
    head = w["model.embed_tokens.weight"] if c.tie or "lm_head.weight" not in w else w["lm_head.weight"]
    return x @ head.T, hidden_states


def forward(model, tokens, return_hidden=False):
    """Logits [T, vocab] (float64 numpy) at every text position; meta tokens prepended.
    With return_hidden, also the hidden states [M + T, hidden] (meta rows included):
    the layer input X0, then the output of each layer (before final_layernorm)."""
    c, w = model
    with torch.no_grad():
        logits, hidden_states = forward_batch(c, w, torch.tensor([tokens], dtype=torch.int64))
    if return_hidden:
        return logits[0].numpy(), [h[0].numpy() for h in hidden_states]
    return logits[0].numpy()


def greedy(model, prompt, count):
    """The greedy continuation by full recomputation at every step."""
    tokens = list(prompt)
    for _ in range(count):
        tokens.append(int(np.argmax(forward(model, tokens)[-1])))
    return tokens[len(prompt):]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="float64 Hymba logits for a model directory")
    parser.add_argument("model_dir")
    parser.add_argument("--tokens", required=True, help="comma-separated ids")
    parser.add_argument("-o", "--output", required=True, help=".npy output, float64 [T, vocab]")
    args = parser.parse_args()
    ids = [int(t) for t in args.tokens.split(",")]
    np.save(args.output, forward(load_model(args.model_dir), ids))
