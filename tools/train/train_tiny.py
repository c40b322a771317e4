"""Trains the small Hymba that ships with hymba.cpp (models/hymba-kjv-tiny).

Corpus: the King James Bible from Debian's bible-kjv-text (public domain),
read with the `bible` program of the bible-kjv package. Tokenizer: a
Llama-style SentencePiece BPE with byte fallback, trained with Debian's
python3-sentencepiece. Model: the project's own float64 reference code
(tests/reference/hymba_ref.py), run in float32 with autograd. Output: a
Hugging Face model directory with bf16 weights, plus the reference's greedy
continuation of a fixed prompt for the C++ tests.

    /usr/bin/python3 tools/train/train_tiny.py [--minutes 12] [--out models/hymba-kjv-tiny]
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import sentencepiece
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import hymba_ref  # noqa: E402
from make_fixtures import BASE_CONFIG, tensor_shapes  # noqa: E402
from safetensors_io import to_storage, write_file  # noqa: E402

VOCAB = 1024
SEQ = 128
PROMPT = "And God said unto Moses,"
CONFIG = dict(BASE_CONFIG, vocab_size=VOCAB, hidden_size=128, intermediate_size=320, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, global_attn_idx=[0, 3], kv_reuse_group=[[1, 2]],
              num_memory_tokens=16, sliding_window=64, rope_type="default", rope_theta=10000.0,
              mamba_d_state=8, mamba_d_conv=4, max_position_embeddings=2048 + 16, seq_length=2048,
              orig_max_position_embeddings=None, torch_dtype="bfloat16", use_cache=True)


def read_corpus():
    if shutil.which("bible") is None:
        sys.exit("needs the `bible` program: apt-get install bible-kjv")
    text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    verses = [re.sub(r"^\S+ ", "", line).strip() for line in text.splitlines() if line.strip()]
    held_out = verses[::50]  # every 50th verse is validation text
    train = [v for i, v in enumerate(verses) if i % 50 != 0]
    return train, held_out


def train_tokenizer(verses, out_dir):
    with tempfile.TemporaryDirectory() as scratch:
        corpus = os.path.join(scratch, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(verses))
        sentencepiece.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(scratch, "tokenizer"), vocab_size=VOCAB, model_type="bpe",
            byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
            remove_extra_whitespaces=False, split_digits=True, character_coverage=1.0, unk_id=0, bos_id=1,
            eos_id=2, pad_id=-1, num_threads=2, minloglevel=2)
        shutil.copyfile(os.path.join(scratch, "tokenizer.model"), os.path.join(out_dir, "tokenizer.model"))
    return sentencepiece.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))


def initial_weights(c, rng):
    """Mamba-style SSM init, scaled projections, small embeddings."""
    weights = {}
    for name, (shape, kind) in tensor_shapes(c, untied=False).items():
        if kind == "matrix":
            scale = 1 / math.sqrt(shape[-1])
            if name.endswith(("out_proj.weight", "down_proj.weight")):
                scale /= math.sqrt(2 * c.layers)
            value = rng.normal(0, scale, shape)
        elif kind == "embed":
            value = rng.normal(0, 0.02 if "embed" in name else 0.5, shape)
        elif kind == "norm":
            value = np.ones(shape)
        elif kind == "bias":
            value = np.zeros(shape)
        elif kind == "conv":
            value = rng.normal(0, 1 / math.sqrt(shape[-1]), shape)
        elif kind == "a_log":
            value = np.log(np.arange(1, shape[1] + 1, dtype=np.float64))[None, :].repeat(shape[0], 0)
        elif kind == "dt_bias":
            dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), shape))
            value = dt + np.log(-np.expm1(-dt))
        else:
            raise ValueError(kind)
        weights[name] = torch.tensor(value, dtype=torch.float32, requires_grad=True)
    return weights


def batches(stream, starts, batch, rng):
    while True:
        picks = rng.sample(starts, batch)
        yield torch.tensor([[1] + stream[s:s + SEQ] for s in picks], dtype=torch.int64)


def loss_of(c, w, tokens):
    logits, _ = hymba_ref.forward_batch(c, w, tokens[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def evaluate(c, w, stream, starts):
    with torch.no_grad():
        total = 0.0
        for first in range(0, len(starts), 16):
            tokens = torch.tensor([[1] + stream[s:s + SEQ] for s in starts[first:first + 16]], dtype=torch.int64)
            total += loss_of(c, w, tokens).item() * len(tokens)
    return math.exp(total / len(starts))


def encode_stream(sp, verses):
    """The verses as one token stream separated by newlines, with each verse's start offset."""
    stream, starts = [], []
    for verse in verses:
        starts.append(len(stream))
        stream += sp.encode(verse) + sp.encode("\n")[-1:]  # "\n" is the byte piece <0x0A>
    return stream, [s for s in starts if s + SEQ <= len(stream)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "models", "hymba-kjv-tiny"))
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    random.seed(0)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)

    train_verses, held_out = read_corpus()
    sp = train_tokenizer(train_verses, args.out)
    train_stream, train_starts = encode_stream(sp, train_verses)
    val_stream, val_starts = encode_stream(sp, held_out)
    val_starts = val_starts[::max(1, len(val_starts) // 96)][:96]

    c = hymba_ref.Config(CONFIG)
    w = initial_weights(c, np.random.RandomState(0))
    decay = [t for n, t in w.items() if t.dim() == 2 and "memory_tokens" not in n]
    rest = [t for n, t in w.items() if not (t.dim() == 2 and "memory_tokens" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    rng = random.Random(0)
    data = batches(train_stream, train_starts, args.batch, rng)
    start, step, budget = time.time(), 0, args.minutes * 60
    print(f"params {sum(t.numel() for t in w.values()):,}, train tokens {len(train_stream):,}, "
          f"initial val ppl {evaluate(c, w, val_stream, val_starts):.1f}", flush=True)
    while time.time() - start < budget:
        progress = (time.time() - start) / budget
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_of(c, w, next(data))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)

    tensors = {}
    for name, value in w.items():
        data_bytes, _ = to_storage(value.detach().double().numpy(), "BF16")
        tensors[name] = ("BF16", list(value.shape), data_bytes)
    write_file(os.path.join(args.out, "model.safetensors"), tensors)
    config = dict(CONFIG, layer_type=["h"] * CONFIG["num_hidden_layers"])
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    special = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": True} for i, t in enumerate(["<unk>", "<s>", "</s>"])}
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": special, "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "legacy": True, "clean_up_tokenization_spaces": False,
                   "tokenizer_class": "LlamaTokenizer", "model_max_length": 2048}, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, f, indent=2)
        f.write("\n")

    # Everything below judges the weights as stored (bf16), with the float64 reference.
    model = hymba_ref.load_model(args.out)
    stored = {n: t.float() for n, t in model[1].items()}
    val_ppl = evaluate(model[0], stored, val_stream, val_starts)
    prompt = [1] + sp.encode(PROMPT)
    continuation = hymba_ref.greedy(model, prompt, 32)
    with open(os.path.join(args.out, "reference_greedy.json"), "w") as f:
        json.dump({"prompt": PROMPT, "prompt_ids": prompt, "greedy_ids": continuation,
                   "greedy_text": sp.decode(continuation)}, f, indent=1)
        f.write("\n")
    summary = {"steps": step, "minutes": round((time.time() - start) / 60, 1), "batch": args.batch, "seq": SEQ,
               "validation_perplexity": round(val_ppl, 2), "validation_tokens": len(val_starts) * SEQ,
               "parameters": sum(t.numel() for t in w.values())}
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(json.dumps(summary), "\ngreedy:", PROMPT + " " + sp.decode(continuation))


if __name__ == "__main__":
    main()
