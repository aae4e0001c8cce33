"""Generation speed: decode tokens/s and arena games/s at several batch sizes.

    python benchmarks/generation.py                       # CPU: smollm2 and tiny at batch 1, 8, 32, 128
    python benchmarks/generation.py --models smollm2-random qwen0.5b-random --batches 1 8 32 64 128 256 \
        --caches dynamic static --device cuda               # GPU: eager vs static KV cache + torch.compile

Decode: a 64-token prompt, exactly ``--new`` new tokens per row (EOS ignored): tokens/s = batch * new / time,
and milliseconds per decode step. Games: TicTacToe between two copies of the model through the arena with
``batch`` games live at once, 8 new tokens per move, invalid moves replaced by a random legal move (as the
reference loop ../shared/bench/naive_ttt.py does). ``*-random`` models have random weights from the real
configs (speed does not depend on the weights). Prints one JSON line per measurement and a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import default_device, device, positive  # noqa: E402
from selfplay.agents.llm import LLMAgent, SamplingConfig  # noqa: E402
from selfplay.agents.models import cache_dir, load_model  # noqa: E402
from selfplay.arena.matches import paired_matches  # noqa: E402
from selfplay.arena.play import play  # noqa: E402
from selfplay.games.core import InvalidPolicy  # noqa: E402
from selfplay.games.tictactoe import TicTacToe  # noqa: E402

CONFIGS = {  # architectures of the real models, for random-weight speed runs
    "smollm2-random": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
        rope_theta=100000.0,
    ),
    "qwen0.5b-random": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
    ),
}


class FallbackTicTacToe(TicTacToe):
    invalid_policy = InvalidPolicy(retries=0, fallback="random")


def build(name: str, device: str, dtype: str):
    if name in CONFIGS:
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m-instruct")  # tokenizer files only
        tokenizer.padding_side = "left"
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(max_position_embeddings=4096, **CONFIGS[name]))
        model = model.to(device, getattr(torch, dtype)).eval()
        return model, tokenizer
    return load_model(name, device=device, dtype=dtype)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decode(model, tokenizer, batch: int, new: int, cache: str, device: str) -> dict:
    ids = torch.randint(3, min(1000, len(tokenizer)), (batch, 64), device=device)
    kwargs = dict(
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=True,
        temperature=1.0,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    if cache == "static":
        kwargs["cache_implementation"] = "static"
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)  # warm-up / compile
    sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    sync(device)
    seconds = time.perf_counter() - start
    return {"tokens_per_s": batch * new / seconds, "ms_per_step": 1000 * seconds / new, "warmup_s": warm}


def games(model, tokenizer, batch: int, cache: str, device: str) -> dict:
    agent = LLMAgent(model, tokenizer, SamplingConfig(temperature=1.0, max_new_tokens=8, cache=cache), name="m")
    matches = paired_matches(TicTacToe.roles, ["m", "m2"], batch)
    agents = {"m": agent, "m2": agent}
    play(FallbackTicTacToe, matches[: min(batch, 8)], agents, progress=False, concurrency=batch)  # warm-up
    start = time.perf_counter()
    episodes = play(FallbackTicTacToe, matches, agents, progress=False, concurrency=batch)
    sync(device)
    seconds = time.perf_counter() - start
    invalid = sum(s.failure is not None for ep in episodes for s in ep.steps)
    moves = sum(len(ep.steps) for ep in episodes)
    return {"games_per_s": len(episodes) / seconds, "invalid_rate": invalid / max(1, moves)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2", "tiny"])
    parser.add_argument("--batches", nargs="+", type=positive, default=[1, 8, 32, 128])
    parser.add_argument("--caches", nargs="+", default=["dynamic"], choices=["dynamic", "static"])
    parser.add_argument("--new", type=positive, default=32, help="new tokens per row in the decode test")
    parser.add_argument("--device", type=device, default=default_device())
    parser.add_argument("--skip-games", action="store_true")
    parser.add_argument("--out", help="also write the JSON lines here")
    args = parser.parse_args()
    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    rows = []
    for name in args.models:
        model, tokenizer = build(name, args.device, dtype)
        for cache in args.caches:
            for batch in args.batches:
                row = {
                    "model": name,
                    "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                    "cache": cache,
                    "batch": batch,
                    **decode(model, tokenizer, batch, args.new, cache, args.device),
                }
                if not args.skip_games:
                    row.update(games(model, tokenizer, batch, cache, args.device))
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"\n{'model':<16} {'cache':<8} {'batch':>5} {'tok/s':>9} {'ms/step':>8} {'games/s':>8} {'invalid':>8}")
    for r in rows:
        print(
            f"{r['model']:<16} {r['cache']:<8} {r['batch']:>5} {r['tokens_per_s']:>9.0f} {r['ms_per_step']:>8.1f} "
            f"{r.get('games_per_s', float('nan')):>8.2f} {r.get('invalid_rate', float('nan')):>8.1%}"
        )
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(json.dumps(r) for r in rows) + "\n")


if __name__ == "__main__":
    main()
