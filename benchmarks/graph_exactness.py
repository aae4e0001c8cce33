"""The fixed-shape forwards (CUDA graphs on a GPU) against a teacher-forced pass, on the device at hand.

    python benchmarks/graph_exactness.py --device cuda        # every prefill and decode forward a captured graph
    python benchmarks/graph_exactness.py                      # on a CPU: the same forwards, run eagerly

Random session calls (prompts sharing stems, so kept prefixes are read back) on tiny float32 models, sampled with
the decoder and then scored by the model's own forward (``token_logprobs``): prints the largest difference of a
sampled log-probability and exits 1 above ``--tolerance``. ``--bf16`` adds a SmolLM2-shaped model with random
weights in bfloat16 (needs the SmolLM2 tokenizer in the selfplay cache), whose differences are those of two bf16
kernels summing in another order, printed, not checked.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import default_device, device, positive, positive_float  # noqa: E402
from selfplay.agents.decode import Decoder  # noqa: E402
from selfplay.agents.models import tiny_model  # noqa: E402
from selfplay.agents.scoring import token_logprobs  # noqa: E402


def worst_difference(model, tok, calls: int, rows: int, seed: int, graphs) -> tuple[float, int, int]:
    """The largest |sampled - teacher-forced| log-probability over ``calls`` random calls of one session, and how
    many fixed-shape forwards the decoder made and captured as CUDA graphs."""
    eos = tok.eos_token_id
    rng = random.Random(seed)
    vocab = min(len(tok), 40000)
    stems = [[rng.randrange(3, vocab) for _ in range(rng.randrange(5, 90))] for _ in range(4)]
    decoder = Decoder(model, eos, {eos}, min_saving=4, graphs=graphs)
    worst = 0.0
    with decoder.session():
        for call in range(calls):
            prompts = []
            for _ in range(rng.randrange(1, rows + 1)):
                stem = rng.choice(stems)
                tail = [rng.randrange(3, min(vocab, 250)) for _ in range(rng.randrange(0, 6))]
                prompts.append(stem[: rng.randrange(1, len(stem) + 1)] + tail)
            out = decoder.decode(prompts, max_new=6, temperature=1.0, seed=call)
            ref = token_logprobs(model, prompts, [o.tokens for o in out], tok.pad_token_id, temperature=1.0)
            for o, r in zip(out, ref):
                if o.tokens:
                    diff = (torch.tensor(o.logprobs) - r[: len(o.tokens)].float().cpu()).abs().max().item()
                    worst = max(worst, diff)
    captured = sum(getattr(s, "graph", None) is not None for s in decoder._steps.values())
    return worst, len(decoder._steps), captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=device, default=default_device())
    parser.add_argument("--calls", type=positive, default=12, help="session calls per model (default 12)")
    parser.add_argument("--rows", type=positive, default=39, help="most prompts per call (default 39)")
    parser.add_argument(
        "--tolerance", type=positive_float, default=1e-4, help="largest float32 difference accepted (default 1e-4)"
    )
    parser.add_argument("--bf16", action="store_true", help="also a SmolLM2-shaped bf16 model (printed only)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products in float32
    graphs = True if args.device.startswith("cuda") else "always"  # on a CPU: the same forwards, eagerly
    worst = 0.0
    for seed, kv_heads in ((8, 4), (7, 2)):
        model, tok = tiny_model(seed=seed, num_key_value_heads=kv_heads)
        diff, made, captured = worst_difference(model.to(args.device), tok, args.calls, args.rows, seed, graphs)
        worst = max(worst, diff)
        print(
            f"float32, {kv_heads} key/value heads: {made} fixed-shape forwards, {captured} captured as CUDA graphs; "
            f"largest |sampled - teacher-forced| log-probability {diff:.2e}"
        )
    if args.bf16:
        from benchmarks.generation import build

        model, tok = build("smollm2-random", args.device, "bfloat16")
        diff, made, captured = worst_difference(model, tok, 4, 64, 0, graphs)
        print(f"bfloat16 SmolLM2-shaped: {made} forwards, {captured} captured; largest difference {diff:.4f}")
    if worst > args.tolerance:
        print(f"FAILED: {worst:.2e} > tolerance {args.tolerance:g}")
        sys.exit(1)
    print(f"float32 within {args.tolerance:g}")


if __name__ == "__main__":
    main()
