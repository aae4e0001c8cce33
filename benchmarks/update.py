"""The update's speed on its own: one forward and backward of the training loss over self-play-shaped samples.

Samples as self-play makes them: every row starts with one seat's system prompt and rules (``--shared`` tokens),
``--groups`` distinct game states after it (``--state`` tokens each), each answered ``--rows / --groups`` times
(``--completion`` tokens). Each pass is timed with the prefix tree forced off (one plain pass over whole rows) and on
(``agents/tree_forward.py``, each shared run once), alternating; prints completion tokens/s, model TFLOP/s
(``Policy.update_flops``), MFU on a GPU, and the largest gradient difference between the two passes.

    python benchmarks/update.py                                   # SmolLM2 on the CPU
    python benchmarks/update.py --device cuda --rows 256 --model smollm2-random
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.args import MODELS, default_device, device, positive  # noqa: E402
from benchmarks.generation import build, sync  # noqa: E402
from selfplay.agents.scoring import pack  # noqa: E402
from selfplay.training.metrics import peak_flops  # noqa: E402
from selfplay.training.policy import Policy  # noqa: E402


def samples(vocab: int, rows: int, groups: int, shared: int, state: int, completion: int, seed: int = 0):
    """(prompts, completions): one shared prefix, ``groups`` states, ``rows // groups`` answers to each."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    prefix = draw(shared)
    states = [prefix + draw(state) for _ in range(groups)]
    prompts = [states[i % groups] for i in range(rows)]
    return prompts, [draw(completion) for _ in range(rows)]


def one_pass(policy: Policy, batch: dict, tree: bool) -> tuple[float, dict]:
    """Seconds of one forward and backward of -sum(log-probs); and the gradients."""
    policy.zero_grad(set_to_none=True)
    sync(str(batch["input_ids"].device))
    start = time.perf_counter()
    logp = policy(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        groups=["policy"] * len(batch["input_ids"]),
        prompt_width=int(batch["prompt_width"]),
        tree=tree,
    )
    (-(logp * batch["completion_mask"]).sum()).backward()
    sync(str(batch["input_ids"].device))
    return time.perf_counter() - start, {
        n: p.grad.detach().clone() for n, p in policy.named_parameters() if p.grad is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", choices=MODELS)
    parser.add_argument("--device", type=device, default=default_device())
    parser.add_argument("--rows", type=positive, default=64)
    parser.add_argument("--groups", type=positive, default=8, help="distinct game states (default 8)")
    parser.add_argument("--shared", type=positive, default=96, help="tokens of the seat's prompt all rows share")
    parser.add_argument("--state", type=positive, default=24, help="tokens of each game state")
    parser.add_argument("--completion", type=positive, default=8)
    parser.add_argument("--reps", type=positive, default=3)
    args = parser.parse_args()
    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    model, tokenizer = build(args.model, args.device, dtype)
    policy = Policy(model, ("player",), "shared").train()
    prompts, completions = samples(len(tokenizer), args.rows, args.groups, args.shared, args.state, args.completion)
    batch = {k: v.to(args.device) for k, v in pack(prompts, completions, tokenizer.pad_token_id).items()}
    width = batch["input_ids"].shape[1]
    flops = policy.update_flops(["policy"] * args.rows, width, [args.completion] * args.rows)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = peak_flops(device_name) if args.device.startswith("cuda") else None
    print(
        f"# {args.model} on {device_name}, {dtype}: {args.rows} rows x {width} tokens ({args.groups} states, "
        f"{args.shared} shared + {args.state} state + {args.completion} completion tokens), "
        f"{flops / 1e12:.2f} TFLOP per pass counted",
        flush=True,
    )
    times: dict[str, list[float]] = {"plain": [], "tree": []}
    grads = {}
    for rep in range(args.reps + 1):  # the first round warms up
        for kind in ["plain", "tree"] if rep % 2 == 0 else ["tree", "plain"]:
            seconds, grads[kind] = one_pass(policy, batch, kind == "tree")
            if rep:
                times[kind].append(seconds)
    scale = max(float(g.abs().max()) for g in grads["plain"].values())
    gap = max(float((grads["plain"][n] - grads["tree"][n]).abs().max()) for n in grads["plain"])
    tokens = args.rows * args.completion
    for kind, ts in times.items():
        s = statistics.median(ts)
        line = (
            f"{kind:<6} {1000 * s:8.1f} ms per pass ({min(ts) * 1000:.1f}-{max(ts) * 1000:.1f})  "
            f"{tokens / s:8.0f} completion tokens/s  {flops / s / 1e12:6.2f} TFLOP/s counted"
        )
        print(line + (f"  MFU {flops / s / peak:.1%}" if peak else ""))
    print(f"largest gradient difference tree vs plain: {gap:.2e} (largest gradient {scale:.2e})")


if __name__ == "__main__":
    main()
