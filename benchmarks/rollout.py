"""Rollout speed: the arena against the reference naive loop, side by side, alternating, in one run.

    python benchmarks/rollout.py                                   # CPU: SmolLM2, 32 TicTacToe games live, 8 new tokens
    python benchmarks/rollout.py --model smollm2-random --device cuda --games 256 --reps 3   # GPU (random weights)

Both play TicTacToe with the same model in both seats, the same games (seeds), the same prompts (the game's own
chat observation) and the same sampling (temperature 1, full vocabulary, at most ``--new`` tokens per move, an
invalid move replaced by a random legal one). The naive loop is ../shared/bench/naive_ttt.py's: all live games'
prompts in one eager transformers ``generate`` per turn. The arena is ``selfplay.arena.play`` with an ``LLMAgent``
(agents/decode.py: shared prefixes once, preallocated cache, finished rows dropped). ``--constrained`` adds a third
column: the arena with constrained decoding (the game lists its legal moves), which the naive loop cannot do.

Per run: games/s, generated tokens/s, ms per decode step and prefill tokens/s (model forwards timed by hooks on the
decoder and the output layer: a forward of one new token per row is a decode step, longer ones are prefill; a
constrained step's output layer restricted to the allowed tokens is not a module call and goes uncounted), and the
arena/naive ratio per repetition with its spread. ``--profile`` prints where one arena run's time goes. Beside each
decode time, its floor: ``2 * parameters * rows`` FLOPs (rows: the run's mean rows per step) at this machine's
fastest measured matmul rate at the decode shape (on a GPU, at least the time to read the weights and the cache),
and the same at plain ``F.linear``'s rate.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.args import MODELS, default_device, device, positive  # noqa: E402
from benchmarks.generation import FallbackTicTacToe, build, sync  # noqa: E402
from benchmarks.threads import cpu_model  # noqa: E402
from selfplay.agents.graph_step import StaticPrefill, StaticStep  # noqa: E402
from selfplay.agents.heap import settled_heap  # noqa: E402
from selfplay.agents.llm import LLMAgent, SamplingConfig  # noqa: E402
from selfplay.agents.precision import cpu_bf16_feature, set_compute_dtype  # noqa: E402
from selfplay.agents.prompts import render_prompt
from selfplay.arena.matches import paired_matches  # noqa: E402
from selfplay.arena.play import play  # noqa: E402
from selfplay.games.core import InvalidAction  # noqa: E402
from selfplay.training.metrics import peak_flops  # noqa: E402


class ForwardClock:
    """Times every forward of the model's decoder: prefill (several tokens per row) and decode steps (one).

    On a GPU each forward is bracketed by two CUDA events, read once the run is over, so the clock never makes the
    host wait for the GPU (a synchronisation per forward would stop the arena queueing step after step, and time
    something other than what runs unobserved); on a CPU, the wall clock."""

    patched = False
    running: ForwardClock | None = None  # the clock of the run in progress (``timed``)

    def __init__(self, model: torch.nn.Module, device: str):
        self.device = device
        self.reset()
        self.in_step = False  # inside a fixed-shape forward: timed as a whole (its capture must not synchronise)

        def outside_steps(hook):
            return lambda *args: None if self.in_step else hook(*args)

        decoder = model.get_decoder()
        decoder.register_forward_pre_hook(outside_steps(self._pre), with_kwargs=True)
        decoder.register_forward_hook(outside_steps(self._post), with_kwargs=True)
        head = model.get_output_embeddings()
        head.register_forward_hook(outside_steps(self._head), with_kwargs=True)
        if not ForwardClock.patched:  # fixed-shape forwards call no decoder module: timed by the running clock
            ForwardClock.patched = True
            StaticStep.run = ForwardClock._whole(StaticStep.run, "decode")
            StaticPrefill.run = ForwardClock._whole(StaticPrefill.run, "prefill")

    def _mark(self):
        """A point in time: a recorded CUDA event on a GPU, the wall clock on a CPU."""
        if self.device.startswith("cuda") and not torch.cuda.is_current_stream_capturing():
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @staticmethod
    def _whole(run, kind: str):
        """``run`` (a fixed-shape forward, a CUDA graph on a GPU) timed as a whole by the running clock, the hooks
        silent inside it."""

        def timed(forward, ids, *args, **kwargs):
            self = ForwardClock.running
            begin, self.in_step = self._mark(), True
            try:
                out = run(forward, ids, *args, **kwargs)
            finally:
                self.in_step = False
            self.spans.append([kind, begin, self._mark(), ids.shape[0], ids.numel()])
            return out

        return timed

    def reset(self) -> None:
        self.spans: list[list] = []  # [kind, start mark, end mark, rows, tokens] per forward
        self.begin = None

    def _pre(self, module, args, kwargs):
        self.begin = self._mark()

    def _post(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        ids = kwargs["inputs_embeds"][..., 0] if ids is None else ids
        kind = "decode" if ids.shape[1] == 1 else "prefill"
        self.spans.append([kind, self.begin, self._mark(), ids.shape[0], ids.numel()])

    def _head(self, module, args, kwargs, output):
        if self.spans:  # the output layer's time goes with the forward it ends
            self.spans[-1][2] = self._mark()

    def summary(self) -> dict:
        """Seconds, steps, rows and tokens per kind of forward (read after the run: on a GPU it synchronises)."""
        sync(self.device)
        seconds = {"prefill": 0.0, "decode": 0.0}
        steps = rows = tokens = 0
        for kind, begin, end, n, numel in self.spans:
            seconds[kind] += begin.elapsed_time(end) / 1000 if hasattr(begin, "elapsed_time") else end - begin
            if kind == "decode":
                steps, rows = steps + 1, rows + n
            else:
                tokens += numel
        return {
            "prefill_tokens": tokens,
            "prefill_tok_per_s": tokens / max(seconds["prefill"], 1e-9),
            "prefill_s": seconds["prefill"],
            "decode_s": seconds["decode"],
            "decode_steps": steps,
            "ms_per_decode_step": 1000 * seconds["decode"] / max(1, steps),
            "rows_per_decode_step": rows / max(1, steps),
        }


def naive(model, tokenizer, games: int, new: int, seed: int, device: str) -> dict:
    """The reference loop: one eager ``generate`` over all live games per turn, invalid moves made random."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    boards = [FallbackTicTacToe() for _ in range(games)]
    for i, g in enumerate(boards):
        g.reset(seed * 100003 + i)
    generated = 0
    while True:
        live = [g for g in boards if g.turn() is not None]
        if not live:
            break
        roles = [g.turn().roles[0] for g in live]
        texts = [tokenizer.decode(render_prompt(tokenizer, g.observe(r))) for g, r in zip(live, roles)]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=new,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=tokenizer.pad_token_id,
            )
        tails = out[:, enc.input_ids.shape[1] :]
        generated += int((tails != tokenizer.pad_token_id).sum())
        for g, r, t in zip(live, roles, tokenizer.batch_decode(tails, skip_special_tokens=True)):
            try:
                action = g.parse(r, t)
            except InvalidAction:
                action = g.parse(r, g.random_action(r, rng))
            g.step(r, [action])
    return {"generated_tokens": generated}


def arena_agent(
    model, tokenizer, games: int, new: int, constrained: bool = False, graphs: bool = True, backend: str = "native"
) -> LLMAgent:
    """The arena's agent of one kind. It is built once and kept across runs, as the trainer keeps its learner's
    agents across steps: on a GPU its decoder's CUDA graphs, captured during the warm-up, are replayed by every later
    run. Nothing else carries over: each ``play`` opens its own session, so no prompt prefix is reused between runs."""
    return LLMAgent(
        model,
        tokenizer,
        SamplingConfig(
            temperature=1.0,
            max_new_tokens=new,
            graphs=graphs,
            constrained=constrained,
            batch_size=max(games, 1),
            backend=backend,
        ),
        name="m",
    )


def arena(agent: LLMAgent, games: int, seed: int) -> dict:
    """The arena: ``play`` with one LLM agent in both seats, every game live at once."""
    agent.sampling.seed, agent.calls = seed, 0  # what the trainer does at every step
    matches = paired_matches(FallbackTicTacToe.roles, ["m", "m2"], games, seed=seed)
    episodes = play(FallbackTicTacToe, matches, {"m": agent, "m2": agent}, progress=False, concurrency=games)
    generated = sum(
        len(s.completion_ids or []) for ep in episodes for s in ep.steps if getattr(s, "completion_ids", None)
    )
    invalid = sum(s.failure is not None for ep in episodes for s in ep.steps)
    crashed = {s.error for ep in episodes for s in ep.steps if s.failure == "AGENT_ERROR"} | {
        ep.error for ep in episodes if ep.status == "error"
    }
    if crashed:  # a speed measured on an agent that raised is no measurement
        raise RuntimeError(f"the arena's agent failed: {sorted(map(str, crashed))[:3]}")
    return {"generated_tokens": generated, "invalid_rate": invalid / max(1, sum(len(ep.steps) for ep in episodes))}


def matmul_rates(batch: int, hidden: int, inner: int, device: str, dtype: torch.dtype) -> list[float]:
    """FLOP/s of this machine's matmuls at a decode shape (batch x hidden @ hidden x inner), the weight resident in
    cache: ``F.linear``, and on a CPU also oneDNN with a prepacked weight (agents/packing.py). On a GPU the products
    are replayed as one CUDA graph, so their launches do not count."""
    a = torch.randn(batch, hidden, device=device, dtype=dtype)
    w = torch.randn(inner, hidden, device=device, dtype=dtype)
    products = [lambda: torch.nn.functional.linear(a, w)]
    if device == "cpu" and dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(w, batch)
        products.append(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    rates = []
    n = 200
    for product in products:
        for _ in range(3):
            product()
        sync(device)
        run = lambda: [product() for _ in range(n)]  # noqa: E731
        if device.startswith("cuda"):  # replayed as one graph: the products' time, not their launches'
            graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                product()
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                run()
            graph.replay()
            run = graph.replay
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        rates.append(2 * batch * hidden * inner * n / (time.perf_counter() - start))
    return rates


def roofline_ms(params: int, rows: float, kv_bytes: float, bandwidth: float, peak: float, context: int = 128) -> float:
    """../shared/GPU.md's floor of one decode step on a GPU: reading the bf16 weights and ``rows`` rows of
    ``context`` tokens of keys and values at ``bandwidth`` bytes/s, or the step's ``2 * params * rows`` FLOPs at the
    card's ``peak``, whichever takes longer (ms)."""
    return 1000 * max((2 * params + rows * context * kv_bytes) / bandwidth, 2 * params * rows / peak)


def copy_bandwidth(device: str) -> float:
    """Bytes per second a device-to-device copy moves (read plus write)."""
    x = torch.empty(256 * 2**20, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    sync(device)
    n, start = 20, time.perf_counter()
    for _ in range(n):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 4 * n / (time.perf_counter() - start)


def timed(fn, clock: ForwardClock, **kwargs) -> dict:
    clock.reset()
    ForwardClock.running = clock
    sync(clock.device)
    start = time.perf_counter()
    result = fn(**kwargs)
    sync(clock.device)
    seconds = time.perf_counter() - start
    return {
        **result,
        "seconds": seconds,
        "games_per_s": kwargs["games"] / seconds,
        "tokens_per_s": result["generated_tokens"] / seconds,
        **clock.summary(),
    }


SHORT = {"float32": "fp32", "bfloat16": "bf16"}


def default_dtype(device: str) -> str:
    return "bfloat16" if device.startswith("cuda") else "float32"


@dataclass
class Setup:
    """One precision's side of the comparison: the arena's model (on a CPU float32 weights, products in ``dtype``,
    agents/precision.py), the naive loop's (on a CPU in bfloat16 a bfloat16 copy: what plain transformers does in
    that dtype), their clocks, the matmul rates and the decode floor at this precision."""

    dtype: str
    model: torch.nn.Module
    tokenizer: object
    naive_model: torch.nn.Module
    clocks: dict
    rates: list
    params: int
    gpu: bool = False
    bandwidth: float = 0.0
    kv_bytes: float = 0.0
    weight_bytes: int = 2
    agents: dict = field(default_factory=dict)

    @classmethod
    def build(cls, args, dtype: str) -> Setup:
        cpu = args.device == "cpu"
        model, tokenizer = build(args.model, args.device, "float32" if cpu else dtype)
        naive_model = model
        if cpu:
            set_compute_dtype(model, getattr(torch, dtype))
            naive_model = copy.deepcopy(model).to(getattr(torch, dtype)) if dtype != "float32" else model
        clocks = {"arena": ForwardClock(model, args.device)}
        clocks["naive"] = clocks["arena"] if naive_model is model else ForwardClock(naive_model, args.device)
        c = model.config
        params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n or c.tie_word_embeddings)
        rates = matmul_rates(args.games, c.hidden_size, c.intermediate_size, args.device, getattr(torch, dtype))
        setup = cls(dtype, model, tokenizer, naive_model, clocks, rates, params, gpu=args.device.startswith("cuda"))
        # a decode step also reads every weight and the rows' keys and values from memory (on a CPU too: 135M
        # parameters do not stay in its caches), in bfloat16 on a GPU and under bfloat16 products on a CPU
        size = torch.tensor([], dtype=getattr(torch, dtype)).element_size()
        setup.bandwidth, setup.weight_bytes = copy_bandwidth(args.device), size
        setup.kv_bytes = (
            2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * size
        )
        return setup

    @property
    def short(self) -> str:
        return SHORT.get(self.dtype, self.dtype)

    def floor_ms(self, rows: float, rate: float | None = None) -> float:
        """The least a decode step of ``rows`` rows can take: its matmul FLOPs at the measured rate (the weight
        resident in cache), or reading the weights and a TicTacToe context (~115 prompt tokens plus the new ones) of
        keys and values at the measured copy bandwidth, whichever is longer."""
        compute = 1000 * 2 * self.params * rows / (rate or max(self.rates))
        if not self.bandwidth:
            return compute
        return max(compute, 1000 * (self.weight_bytes * self.params + rows * 128 * self.kv_bytes) / self.bandwidth)

    def describe(self, games: int) -> str:
        gpu = (
            f"; copy bandwidth {self.bandwidth / 1e9:.0f} GB/s, KV {self.kv_bytes} B per token"
            if self.bandwidth
            else ""
        )
        return (
            f"# {self.dtype}: matmul at the decode shape {' / '.join(f'{r / 1e9:.0f}' for r in self.rates)} GFLOP/s "
            f"(F.linear{' / prepacked oneDNN' if len(self.rates) > 1 else ''}) -> decode floor "
            f"{self.floor_ms(games):.1f} ms per step of {games} rows ({2 * self.params / 1e9:.2f} GFLOP per token){gpu}"
        )

    def runs(self, args) -> dict:
        """The timed runs of this precision, by kind name (``naive bf16``, ``arena bf16``, ...)."""
        cuda = args.device.startswith("cuda")
        options = {"arena": {}, "arena-constrained": {"constrained": True}, "arena-eager": {"graphs": False}}
        options["arena-vllm"] = {"backend": "vllm"}
        chosen = (
            ["arena"] + ["arena-constrained"] * args.constrained + ["arena-eager"] * cuda + ["arena-vllm"] * args.vllm
        )
        self.agents = {k: arena_agent(self.model, self.tokenizer, args.games, args.new, **options[k]) for k in chosen}
        runs = {
            f"naive {self.short}": lambda seed: timed(
                naive, self.clocks["naive"], model=self.naive_model, tokenizer=self.tokenizer, games=args.games,
                new=args.new, seed=seed, device=args.device,
            )
        }  # fmt: skip
        for kind, agent in self.agents.items():
            runs[f"{kind} {self.short}"] = lambda seed, agent=agent: timed(
                arena, self.clocks["arena"], agent=agent, games=args.games, seed=seed
            )
        return runs


def table(setups: list[Setup], results: dict[str, list[dict]]) -> None:
    """Per kind the medians, the multiples of the decode floors, and the ratio to the naive loop of the same
    precision per repetition (mean, min-max); then each arena against the first precision's arena."""
    roof = f" {'x GPU.md floor':>14}" if setups[0].gpu else ""  # the bandwidth floor of ../shared/GPU.md
    print(
        f"\n{'':<24} {'games/s':>8} {'tok/s':>8} {'ms/decode step':>15} {'rows':>5} {'x floor':>8} "
        f"{'x F.linear floor':>16}{roof} {'prefill tok/s':>14} {'prefill tokens':>15} {'ratio vs naive (min-max)':>26}"
    )
    for setup in setups:
        naive_runs = results[f"naive {setup.short}"]
        for kind in [k for k in results if k.endswith(" " + setup.short)]:
            rs = results[kind]
            ratios = [r["games_per_s"] / n["games_per_s"] for r, n in zip(rs, naive_runs)]
            med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
            ms, rows = med("ms_per_decode_step"), med("rows_per_decode_step")

            def over(floor: float, width: int, digits: int) -> str:  # "-" where no decode step ran (--new 1)
                return f"{ms / floor:>{width}.{digits}f}" if rows else f"{'-':>{width}}"

            print(
                f"{kind:<24} {med('games_per_s'):>8.2f} {med('tokens_per_s'):>8.0f} {ms:>15.1f} {rows:>5.1f} "
                f"{over(setup.floor_ms(rows), 8, 2)} {over(setup.floor_ms(rows, setup.rates[0]), 16, 2)}"
                + (
                    f" {over(roofline_ms(setup.params, rows, setup.kv_bytes, setup.bandwidth, peak(setup)), 14, 1)}"
                    if setup.gpu
                    else ""
                )
                + f" {med('prefill_tok_per_s'):>14.0f} "
                f"{med('prefill_tokens'):>15.0f} {statistics.mean(ratios):>14.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
    first = setups[0]
    for setup in setups[1:]:
        for kind in [k.rsplit(" ", 1)[0] for k in results if k.endswith(" " + setup.short)]:
            base = results.get(f"{kind} {first.short}")
            if base:
                r = [a["games_per_s"] / b["games_per_s"] for a, b in zip(results[f"{kind} {setup.short}"], base)]
                print(
                    f"{kind} {setup.short} / {kind} {first.short}: {statistics.mean(r):.2f}x ({min(r):.2f}-{max(r):.2f})"
                )


def peak(setup: Setup) -> float:
    """The card's dense bf16 peak (GPU.md's 8e14 where the card is not listed)."""
    return peak_flops(torch.cuda.get_device_name()) or 8e14


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", choices=MODELS)
    parser.add_argument("--games", type=positive, default=32, help="games live at once (default 32)")
    parser.add_argument("--new", type=positive, default=8, help="most new tokens per move (default 8)")
    parser.add_argument("--reps", type=positive, default=3, help="repetitions, alternating the order (default 3)")
    parser.add_argument("--device", type=device, default=default_device())
    parser.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--constrained", action="store_true", help="also time the arena with constrained decoding")
    parser.add_argument(
        "--vllm",
        action="store_true",
        help="also time the arena sampling through vLLM (GPU, needs "
        "the vllm package; log-probs recomputed by the model, as in training: its decode runs inside vLLM, so its "
        "decode columns stay empty and its prefill columns are that re-scoring)",
    )
    parser.add_argument("--profile", action="store_true", help="print where one arena run's time goes (cProfile)")
    parser.add_argument("--out", help="also write the JSON lines here")
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=("float32", "bfloat16"),
        help="precisions, side by side (default: float32 and bfloat16 on a CPU with AMX or AVX512-BF16, float32 on "
        "other CPUs, bfloat16 on a GPU); on a CPU bfloat16 is the arena's bfloat16 products over float32 weights "
        "and the naive loop on a bfloat16 copy",
    )
    args = parser.parse_args()
    if args.vllm:
        from selfplay.agents.vllm_backend import unavailable

        if unavailable():
            parser.error(f"--vllm: {unavailable()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = args.dtype or (
        ["float32", "bfloat16"] if args.device == "cpu" and cpu_bf16_feature() else [default_dtype(args.device)]
    )
    setups = [Setup.build(args, dtype) for dtype in dtypes]
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({cpu_model()})"
    print(
        f"# {args.model} on {device_name} ({torch.get_num_threads()} threads), {args.games} games, {args.new} new tokens"
    )
    for setup in setups:
        print(setup.describe(args.games), flush=True)
    runs = {kind: run for setup in setups for kind, run in setup.runs(args).items()}
    kinds = list(runs)
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    lines = []
    with settled_heap():  # as the trainer does: the loaded stack out of the garbage collector's full passes
        for kind in kinds:  # warm-up (and, on a GPU, kernel selection and graph capture) with every game
            runs[kind](999)
        for rep in range(args.reps):
            order = kinds if rep % 2 == 0 else list(reversed(kinds))
            for kind in order:
                row = {"kind": kind, "rep": rep, "device": device_name, "model": args.model, "games": args.games}
                row.update({"new": args.new, **runs[kind](rep)})
                results[kind].append(row)
                lines.append(row)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    table(setups, results)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        arena(setups[-1].agents["arena"], args.games, seed=0)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    if args.out:
        Path(args.out).write_text("\n".join(json.dumps(r) for r in lines) + "\n")


if __name__ == "__main__":
    main()
