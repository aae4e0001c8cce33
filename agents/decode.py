"""Batched sampling from a causal LM that wastes nothing the answer does not depend on.

- **Shared prefixes once**: the batch's prompts form a radix tree (identical prompts, a system prompt, a game's rules
  and board header shared by many games); every tree node's tokens are run through the model once, level by level,
  each level one batched forward over the nodes' segments on top of their ancestors' keys and values (the idea of
  SGLang's RadixAttention, Zheng et al. 2024, within one call). A row's key/value cache is its path through the tree.
- **No padding waste**: the segments of a level are bucketed by length (least padding plus per-forward cost).
- **Shared prefixes across calls**: inside ``Decoder.session()`` (the arena opens one per ``play``, while no weights
  change) the keys and values of each call's prompts and shared prefixes are kept (least recently used out), and a
  later call's prompts skip what they start with: the system prompt and rules, a game's growing history.
- **Prepacked weights on a CPU**: inside a session every float32 linear layer multiplies by a copy of its weight
  reordered once for oneDNN (``agents/packing.py``), 1.6-2.5x the matmul rate of ``F.linear`` at decode shapes.
- **A preallocated cache**: decoding writes each step's keys and values in place instead of concatenating.
- **Cheap constrained sampling**: where every live row is constrained to spell a legal action, the output layer is
  evaluated only on the tokens some row may emit; a forced end-of-text costs no forward; finished rows are dropped.
- **Exact log-probabilities**: each sampled token's ``log softmax(logits / T)`` (renormalised over the allowed tokens
  when constrained) is what a teacher-forced pass over the same tokens computes (``agents/scoring.token_logprobs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from transformers.cache_utils import DynamicCache

from selfplay.agents.device_io import left_padded, upload, upload_all
from selfplay.agents.graph_cache import GraphCache
from selfplay.agents.graph_step import llama_of
from selfplay.agents.kv_cache import Preallocated, cache_keyword, make_cache, plain_head
from selfplay.agents.packing import packed_linears
from selfplay.agents.precision import compute_dtype
from selfplay.agents.radix import Node, PrefixPool, default_min_saving, forward_plan, radix_tree, reuse, segments
from selfplay.agents.token_sampling import Sampled, mask_disallowed, next_allowed, sample_tokens, through_stop


class Decoder:
    """Sampling for one model: ``decode(prompts, ...)`` returns a :class:`Sampled` per prompt.

    The call runs in three parts: :meth:`prefill` (the prompts' radix tree, kept prefixes reused), then one of two
    decoding loops: :meth:`_decode_graphed` (fixed-shape steps, CUDA graphs on a GPU) or :meth:`_decode_eager` (a
    preallocated cache, finished rows leaving the batch). Both share :meth:`_advance` (one step's bookkeeping), and
    rows that need neither constraints nor stop strings take :meth:`_decode_on_device` (no host sync per step).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        eos: int,
        stop_ids: set[int],
        *,
        min_saving: int | None = None,
        max_rows: int = 256,
        graphs: bool | str = True,
        kept_tokens: int = 16384,
        pack: bool = True,
    ):
        """``min_saving``: token computations one more forward must save to be worth it (default:
        :func:`default_min_saving`). ``pack``: prepack the CPU linear layers' weights inside a session.
        ``kept_tokens``: the most prompt tokens kept across the calls of a session."""
        self.model, self.eos, self.stop_ids = model, eos, set(stop_ids) | {eos}
        if min_saving is None:
            min_saving = default_min_saving(next(model.parameters()).device)
        self.min_saving, self.max_rows, self.pack = min_saving, max_rows, pack
        self.graphs = GraphCache(model, graphs)
        self.kw = cache_keyword(model)
        self.head = plain_head(model)  # restricted logits need a plain linear output layer
        self.pool = PrefixPool(kept_tokens)
        self.in_session = False

    @contextmanager
    def session(self) -> Iterator[None]:
        """Within it, each call's shared prompt prefixes are kept for the next calls and (on a CPU) the linear
        layers run on prepacked weights. The caller promises that the model's weights (and the active adapter) do not
        change inside; everything kept is dropped on leaving."""
        outer = self.in_session
        self.in_session = True
        try:
            with packed_linears(self.model) if self.pack and not outer else nullcontext():
                yield
        finally:
            self.in_session = outer
            if not outer:
                self.pool.clear()

    # -- prefill ---------------------------------------------------------------------------------------------------
    def prefill(self, prompts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every prompt run through the model along its radix-tree path; returns the keys and values of every row's
        prompt left-padded to ``width``, as (rows, width, 2, layers, heads, head_dim), and last-token logits.

        Keys and values of every node's tokens go to one flat store, a row per token holding every layer's keys and
        values (row 0 all zeros for padding), so a batch's past, a kept prefix and the final cache are each one
        gather, whatever the tree's shape (on a GPU, kernel launches rather than bytes bound such bookkeeping).
        """
        device = next(self.model.parameters()).device
        nodes = radix_tree(prompts, self.min_saving)
        nodes, cached = reuse(nodes, self.pool.kept, self.pool.least) if self.in_session else (nodes, {})
        plan = [
            (members, max(nodes[i].start for i in members), max(len(nodes[i].tokens) for i in members))
            for members in forward_plan(nodes, self.min_saving, self.max_rows, max(16384, 4 * self.min_saving))
        ]  # (members, past width, segment width), in dependency order
        spans, start, total = self._layout(nodes, cached, plan)
        store: torch.Tensor | None = None  # (total, 2, layers, heads, dim)
        if cached:  # the kept rows, in one copy, to store rows 1 .. start - 1
            store = self.pool.rows.new_zeros(total, *self.pool.rows.shape[1:])
            kept = [
                r for i, rows in cached.items() for r in rows[nodes[i].start : nodes[i].start + len(nodes[i].tokens)]
            ]
            store[1:start] = self.pool.read(kept, device)
        last, used = None, start
        for members, wp, ws in plan:
            logits, store = self._prefill_forward(
                nodes, members, spans=spans, widths=(wp, ws), store=store, used=used, total=total
            )
            if last is None:
                last = logits.new_empty(len(nodes), logits.shape[-1])
            last[upload(members, device)] = logits
            used += len(members) * ws
        if self.in_session:
            self.pool.keep(nodes, spans, store)
        row_node = [0] * len(prompts)
        for i, n in enumerate(nodes):
            for r in n.ends:
                row_node[r] = i
        index, row_node = upload_all(
            [left_padded([spans[row_node[r]] for r in range(len(prompts))], width), row_node], device
        )
        return store[index], last[row_node]

    @staticmethod
    def _layout(nodes: list[Node], cached: dict, plan: list) -> tuple[list[list[int]], int, int]:
        """Where each node's keys and values go in the store: row 0 padding, the kept prefixes, then every planned
        forward's segments. Returns each node's whole-prefix rows, the first computed row and the store's size."""
        offset, used = [0] * len(nodes), 1
        for i in cached:  # prefixes computed by an earlier call of this session come first
            offset[i] = used
            used += len(nodes[i].tokens)
        start = used
        for members, _, ws in plan:
            for r, i in enumerate(members):
                offset[i] = used + r * ws + ws - len(nodes[i].tokens)
            used += len(members) * ws
        spans: list[list[int]] = [[] for _ in nodes]
        for i, n in enumerate(nodes):  # parents come first
            spans[i] = (spans[n.parent] if n.parent >= 0 else []) + list(range(offset[i], offset[i] + len(n.tokens)))
        return spans, start, used

    def _prefill_forward(self, nodes, members, *, spans, widths, store, used, total):
        """One planned forward: ``members``' segments on their gathered past, written to store rows from ``used``;
        returns their last-token logits and the store (made on the first forward)."""
        (wp, ws), b = widths, len(members)
        device = next(self.model.parameters()).device
        ids, own, pos = segments(nodes, members)
        index = left_padded([spans[nodes[i].parent] if nodes[i].start else [] for i in members], wp)
        mask = torch.cat([(index > 0).long(), own], dim=1)  # store row 0 is padding, no span holds it
        index, ids, own, pos, mask = upload_all([index, ids, own, pos, mask], device)
        static = self.graphs.prefill(b, ws, wp, device)
        if static is not None:  # a fixed-shape forward, replayed as a CUDA graph on a GPU
            if store is None:
                store = static.kv.new_zeros(total, *static.kv.shape[2:])
            logits, kv = static.run(ids, own, pos, index=index if wp else None, store=store)
            store[used : used + b * ws].view(kv.shape).copy_(kv)
            return logits, store
        logits, layers = self._forward(ids, mask, pos, store[index] if wp else None)
        k0 = layers[0][0]
        if store is None:  # bfloat16 under bfloat16 products: attention reads it as is, not cast every step
            dtype = torch.bfloat16 if compute_dtype(self.model) == torch.bfloat16 else k0.dtype
            store = k0.new_zeros(total, 2, len(layers), k0.shape[1], k0.shape[3], dtype=dtype)
        rows = store[used : used + b * ws].view(b, ws, 2, len(layers), k0.shape[1], k0.shape[3])
        for j, (k, v) in enumerate(layers):  # (b, heads, wp + ws, dim) -> store rows (b, ws, heads, dim)
            rows[:, :, 0, j] = k[:, :, wp:].transpose(1, 2)
            rows[:, :, 1, j] = v[:, :, wp:].transpose(1, 2)
        return logits, store

    def _forward(self, ids, mask, positions, past: torch.Tensor | None):
        """Last-token logits and per layer the (rows, heads, past + new, dim) keys and values; ``past``: (rows,
        width, 2, layers, heads, dim) as gathered from the store."""
        layers = (
            None
            if past is None
            else [(past[:, :, 0, j].transpose(1, 2), past[:, :, 1, j].transpose(1, 2)) for j in range(past.shape[3])]
        )
        kwargs = {self.kw: DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()}
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs
        )
        return out.logits[:, -1], [(layer.keys, layer.values) for layer in kwargs[self.kw].layers]  # filled in place

    # -- decoding --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        prompts: list[list[int]],
        max_new: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        legal: list[list[list[int]] | None] | None = None,
        seed: int = 0,
        stopped: Callable[[int, list[int]], bool] | None = None,
    ) -> list[Sampled]:
        """Sample up to ``max_new`` tokens for each prompt; ``legal`` (per row: token spellings, or None) constrains
        a row to spell one of them and then stop; ``stopped(row, tokens)`` ends a row early (stop strings).

        Every step draws one uniform for every prompt, finished or not, so a row's tokens do not depend on which
        other rows are still running: the fixed-shape and the eager paths sample the same tokens."""
        device = next(self.model.parameters()).device
        if self.graphs.wanted(device):  # the weights may have changed since the last call, never within one
            llama_of(self.model).refresh()
        n = len(prompts)
        run = _Run(
            prompts, max_new, temperature=temperature, top_p=top_p, legal=legal or [None] * n, stopped=stopped,
            generator=torch.Generator(device=device).manual_seed(seed), eos=self.eos,
        )  # fmt: skip
        past, logits = self.prefill(prompts, run.width)
        lengths = torch.tensor([len(p) for p in prompts])
        columns = torch.arange(run.width + max_new)
        mask, positions = upload_all(
            [((columns >= run.width - lengths[:, None]) & (columns < run.width)).long(), lengths], device
        )
        static = self.graphs.step(n, run.width + max_new, device)
        if static is None:
            return self._decode_eager(run, past, logits=logits, mask=mask, positions=positions)
        static.load(past, mask[:, : run.width])  # finished rows stay in the graph, their outputs unread
        if stopped is None and all(x is None for x in run.legal):
            return self._decode_on_device(run, static, logits=logits, positions=positions)
        return self._decode_graphed(run, static, logits, positions)

    def _decode_graphed(self, run: _Run, static, logits: torch.Tensor, positions: torch.Tensor) -> list[Sampled]:
        """Each step a replayed fixed-shape forward over every row; finished rows are fed end-of-text, unread."""
        n, device, rows = len(run.out), logits.device, None
        live = list(range(n))
        for step in range(run.max_new):
            keep, tokens = self._advance(run, live, logits=logits, rows=rows, step=step)
            if keep is None:
                break
            if len(keep) < len(live):
                live = [live[j] for j in keep]
                rows = upload(live, device)
            fed = upload([tokens[j] for j in keep], device)
            if rows is not None:
                fed = torch.full((n,), self.eos, dtype=torch.long, device=device).index_copy_(0, rows, fed)
            logits = static.run(fed, positions + step, run.width + step)
            logits = logits if rows is None else logits[rows]
        return run.out

    def _decode_eager(self, run: _Run, past, *, logits, mask, positions) -> list[Sampled]:
        """Each step one forward on a preallocated cache; finished rows leave the batch."""
        n, device, rows = len(run.out), logits.device, None
        buf = past.new_zeros(2, past.shape[3], n, past.shape[4], run.width + run.max_new, past.shape[5])  # one block
        buf[:, :, :, :, : run.width] = past.permute(2, 3, 0, 4, 1, 5)
        layers = [Preallocated(buf[0, j], buf[1, j], run.width) for j in range(buf.shape[1])]
        cache, live = make_cache(layers), list(range(n))
        for step in range(run.max_new):
            keep, tokens = self._advance(run, live, logits=logits, rows=rows, step=step)
            if keep is None:
                break
            if len(keep) < len(live):  # finished rows leave the batch
                live = [live[j] for j in keep]
                rows, index = upload(live, device), upload(keep, device)
                for layer in layers:
                    layer.select(index)
                mask, positions = mask.index_select(0, index), positions.index_select(0, index)
            col = run.width + step
            mask[:, col] = 1
            ids = upload([tokens[j] for j in keep], device)[:, None]
            restrict = self._restriction(live, run.nxt)
            logits = self._step(ids, mask[:, : col + 1], positions[:, None], cache=cache, restrict=restrict)
            positions = positions + 1
        return run.out

    def _advance(self, run: _Run, live: list[int], *, logits, rows, step: int) -> tuple[list[int] | None, list[int]]:
        """Sample one token for every live row and record it; returns which of ``live`` go on (None: none, or the
        last step) and the sampled tokens. A row whose only way on is end-of-text gets it at probability 1, free."""
        allowed = [run.nxt.get(r) for r in live]
        uniform = torch.rand(len(run.out), 1, device=logits.device, generator=run.generator)
        tokens, logps = sample_tokens(
            mask_disallowed(logits, allowed), run.temperature, run.top_p,
            uniform=uniform if rows is None else uniform[rows],
        )  # fmt: skip
        tokens, logps = tokens.tolist(), logps.tolist()
        keep = []
        for j, r in enumerate(live):
            o = run.out[r]
            o.tokens.append(tokens[j])
            o.logprobs.append(logps[j])
            if o.allowed is not None:
                o.allowed.append(allowed[j])
                run.nxt[r] = next_allowed(run.legal[r], o.tokens, self.eos)
            done = tokens[j] in self.stop_ids or (run.stopped is not None and run.stopped(r, o.tokens))
            if not done and run.nxt.get(r) == [self.eos]:
                if step + 1 < run.max_new:  # a forced end-of-text: probability 1, no forward needed
                    o.tokens.append(self.eos)
                    o.logprobs.append(0.0)
                    o.allowed.append([self.eos])
                done = True
            if not done:
                keep.append(j)
        return (None if not keep or step + 1 == run.max_new else keep), tokens

    def _decode_on_device(self, run: _Run, static, *, logits: torch.Tensor, positions: torch.Tensor, check: int = 8):
        """Decoding with neither constraints nor stop strings, without waiting for the GPU at every step: tokens go
        from one step's sampling straight into the next step's graph, finished rows are fed end-of-text, and the
        host reads the tokens once at the end (and whether every row has finished every ``check`` steps). The host
        queues step after step while the GPU runs them; the sampled tokens are those of the per-step loop."""
        n, device = len(run.out), logits.device
        stop = upload(sorted(self.stop_ids), device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        drawn, scores = [], []
        for step in range(run.max_new):
            uniform = torch.rand(n, 1, device=device, generator=run.generator)
            tokens, logps = sample_tokens(logits, run.temperature, run.top_p, uniform=uniform)
            tokens = tokens.masked_fill(done, self.eos)  # finished rows: fed end-of-text, their samples never read
            drawn.append(tokens)
            scores.append(logps)
            done = done | torch.isin(tokens, stop)
            if step + 1 == run.max_new or (step + 1) % check == 0 and bool(done.all()):
                break
            logits = static.run(tokens, positions + step, run.width + step)
        tokens, logps = torch.stack(drawn, 1).tolist(), torch.stack(scores, 1).tolist()
        for o, row, lp in zip(run.out, tokens, logps):
            end = through_stop(row, self.stop_ids)
            o.tokens, o.logprobs = row[:end], lp[:end]
        return run.out

    def _restriction(self, live: list[int], nxt: dict[int, list[int]]) -> torch.Tensor | None:
        """The union of the next allowed tokens when every live row is constrained (None: full vocabulary)."""
        if self.head is None or any(r not in nxt for r in live):
            return None
        return torch.tensor(sorted({t for r in live for t in nxt[r]}), device=self.head.weight.device)

    def _step(self, ids, mask, positions, *, cache, restrict: torch.Tensor | None) -> torch.Tensor:
        """One eager decode forward; with ``restrict``, the output layer only on those tokens (-inf elsewhere)."""
        kwargs = {self.kw: cache}
        if restrict is None:
            return self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs
            ).logits[:, -1]
        hidden = self.model.get_decoder()(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
        ).last_hidden_state[:, -1]
        sub = torch.nn.functional.linear(
            hidden, self.head.weight[restrict], None if self.head.bias is None else self.head.bias[restrict]
        )
        full = torch.full((len(ids), self.head.weight.shape[0]), float("-inf"), device=sub.device, dtype=sub.dtype)
        return full.index_copy(1, restrict, sub)


class _Run:
    """One decode call's settings and state: its rows' outputs and each constrained row's next allowed tokens."""

    def __init__(self, prompts, max_new, *, temperature, top_p, legal, stopped, generator, eos):
        self.width, self.max_new, self.temperature, self.top_p = (
            max(len(p) for p in prompts),
            max_new,
            temperature,
            top_p,
        )
        self.legal, self.stopped, self.generator = legal, stopped, generator
        self.out = [Sampled([], [], [] if legal[i] is not None else None) for i in range(len(prompts))]
        self.nxt = {r: next_allowed(legal[r], [], eos) for r in range(len(prompts)) if legal[r] is not None}
