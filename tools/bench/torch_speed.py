"""The yardstick of hymba bench's "x PyTorch" figures: the project's PyTorch
reference (tests/reference/hymba_ref.py) run in float32 on the same checkpoint
and thread count.

  /usr/bin/python3 tools/bench/torch_speed.py MODEL_DIR [-p 512] [-t 2]

Prints prompt-processing tokens/s (one forward over meta tokens + p tokens)
and two decode figures: the reference's own decode step (it has no cache, so
each new token recomputes the sequence: one forward over -n tokens of context),
and the rate of one token's matrix-vector products alone (every weight matrix
times one vector, as torch runs them), an upper bound on what any cached
PyTorch float32 decode step could reach."""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference"))
import hymba_ref  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("-p", type=int, default=512, help="prompt tokens")
    parser.add_argument("-t", type=int, default=2, help="threads")
    parser.add_argument("-n", type=int, default=128, help="context of the reference's decode step")
    parser.add_argument("-r", type=int, default=3, help="repetitions (best is reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.t)
    c, weights = hymba_ref.load_model(args.model_dir)
    w = {name: value.float() for name, value in weights.items()}
    del weights
    torch.set_default_dtype(torch.float32)
    tokens = torch.randint(0, c.vocab_size, (1, args.p), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        best = float("inf")
        for _ in range(args.r):
            start = time.perf_counter()
            logits, _ = hymba_ref.forward_batch(c, w, tokens)
            best = min(best, time.perf_counter() - start)
        assert logits.dtype == torch.float32, logits.dtype
        step = float("inf")
        for _ in range(args.r):
            start = time.perf_counter()
            hymba_ref.forward_batch(c, w, tokens[:, :args.n])
            step = min(step, time.perf_counter() - start)
        matrices = [v for name, v in w.items() if v.dim() == 2 and "A_log" not in name and "memory_tokens" not in name
                    and "embed_tokens" not in name]
        matrices.append(w.get("lm_head.weight", w["model.embed_tokens.weight"]))
        x = {m.shape[1]: torch.randn(m.shape[1]) for m in matrices}
        decode = float("inf")
        for _ in range(args.r):
            start = time.perf_counter()
            for m in matrices:
                torch.mv(m, x[m.shape[1]])
            decode = min(decode, time.perf_counter() - start)
    print(f"torch {torch.__version__}, {args.t} threads: pp{args.p} {args.p / best:.2f} tokens/s; "
          f"reference decode at context {args.n} {1 / step:.3f} tokens/s; "
          f"one token's matrix-vector products {1 / decode:.2f} tokens/s")


if __name__ == "__main__":
    main()
