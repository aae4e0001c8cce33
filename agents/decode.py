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
  when constrained) is what a teacher-forced pass over the same tokens computes (``agents/llm.token_logprobs``).
"""

from __future__ import annotations

import bisect
import inspect
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

from selfplay.agents.graph_step import StaticPrefill, StaticStep, llama_of, prefill_bytes, step_bytes, supports
from selfplay.agents.packing import packed_linears


@dataclass
class Node:
    """A segment of the prompt radix tree: tokens ``[start, start + len(tokens))`` of every row below it."""

    tokens: list[int]
    parent: int
    start: int
    level: int
    ends: list[int] = field(default_factory=list)  # rows whose prompt ends with this node


def _common(a: Sequence[int], b: Sequence[int], lo: int = 0) -> int:
    """Length of the common prefix of ``a`` and ``b`` (which share ``lo`` items already): a binary search on the
    equality of slices, each compared in C."""
    hi = min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _lcp(rows: list[list[int]], group: list[int], start: int) -> int:
    """Length of the prefix every row of ``group`` shares (they share ``start`` tokens already): that of the
    lexicographically least and greatest rows, found by list comparison in C, not by walking every row."""
    return _common(min(rows[i] for i in group), max(rows[i] for i in group), start)


def radix_tree(rows: list[list[int]], min_saving: int = 64) -> list[Node]:
    """The prompts as a radix tree of nodes (parents before children). A run shared by ``k`` rows becomes its own
    node only when sharing saves at least ``min_saving`` token computations, ``(k - 1) * length``; a smaller one is
    repeated in each branch, since every extra forward streams all the weights once."""
    nodes: list[Node] = []

    def build(group: list[int], start: int, parent: int, level: int) -> None:
        end = _lcp(rows, group, start)
        longest = max(len(rows[i]) for i in group)
        if len(group) > 1 and parent >= 0 and end < longest and (len(group) - 1) * (end - start) < min_saving:
            # too little to share here: each branch starts its own node at `start`
            ended = [i for i in group if len(rows[i]) == end]
            if ended:
                nodes.append(Node(rows[ended[0]][start:end], parent, start, level, ended))
            for sub in _branches(rows, [i for i in group if len(rows[i]) > end], end):
                build(sub, start, parent, level)
            return
        if len(group) == 1:
            end = len(rows[group[0]])
        nodes.append(Node(rows[group[0]][start:end], parent, start, level, [i for i in group if len(rows[i]) == end]))
        me = len(nodes) - 1
        for sub in _branches(rows, [i for i in group if len(rows[i]) > end], end):
            build(sub, end, me, level + 1)

    for sub in _branches(rows, list(range(len(rows))), 0):
        build(sub, 0, -1, 0)
    return nodes


def _reuse(nodes: list[Node], kept: dict[tuple[int, ...], object], least: int) -> tuple[list[Node], dict[int, object]]:
    """``nodes`` with every run of tokens that a kept prefix covers turned into a node of level -1 (computed by an
    earlier call: its keys and values are the kept entry's rows ``[start, start + len)``). A node that some row ends
    at keeps its last token to compute, so that row still gets its logits. Returns the new nodes (parents first) and
    {new node index: the kept entry it reads}.

    The kept prefix sharing the most with a node's path is one of the path's two neighbours in the sorted kept
    prefixes (the longest common prefix with a set of sequences is attained next to them in lexicographic order), so
    each node costs a binary search, not a scan of every kept prefix."""
    keys = sorted(kept)
    paths: list[tuple[int, ...]] = []  # each node's whole path from position 0
    out: list[Node] = []
    read: dict[int, object] = {}
    new_index: list[int] = []  # the node (or its computed remainder) that children hang under
    for n in nodes:
        path = (paths[n.parent] if n.parent >= 0 else ()) + tuple(n.tokens)
        paths.append(path)
        end = len(path)
        at = bisect.bisect_left(keys, path)
        best, key = max(((_common(path, k), k) for k in keys[max(0, at - 1) : at + 1]), default=(-1, None))
        covered = min(best, end - 1 if n.ends else end)
        parent = new_index[n.parent] if n.parent >= 0 else -1
        if covered <= n.start or covered < least:
            out.append(Node(list(n.tokens), parent, n.start, n.level, list(n.ends)))
        else:
            out.append(Node(n.tokens[: covered - n.start], parent, n.start, -1))
            read[len(out) - 1] = kept[key]
            if covered < end:  # the rest is computed on top of it
                out.append(Node(n.tokens[covered - n.start :], len(out) - 1, covered, n.level, list(n.ends)))
        new_index.append(len(out) - 1)
    return out, read


def _branches(rows: list[list[int]], group: list[int], at: int) -> list[list[int]]:
    """``group`` split by the token at position ``at`` (insertion order kept)."""
    out: dict[int, list[int]] = {}
    for i in group:
        out.setdefault(rows[i][at], []).append(i)
    return list(out.values())


def power_of_two(n: int) -> int:
    """The least power of two >= ``n`` (a bucketed shape)."""
    return 1 << (n - 1).bit_length()


def round_up(n: int, of: int = 64) -> int:
    """The least multiple of ``of`` >= ``n`` (a bucketed shape)."""
    return -(-n // of) * of


def upload(host: torch.Tensor | list, device: torch.device) -> torch.Tensor:
    """A host tensor (or list of ints) on ``device``; on a GPU through pinned memory, asynchronously: a copy from
    pageable memory waits for every kernel queued before it, so the host could never run ahead of the GPU."""
    if not isinstance(host, torch.Tensor):
        host = long_tensor(host)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def upload_all(hosts: list[torch.Tensor | list], device: torch.device) -> list[torch.Tensor]:
    """Several int64 host tensors (or lists of ints) on ``device`` in one transfer: one pinned buffer, one copy
    (each transfer costs the host tens of microseconds, more than moving these few kilobytes)."""
    tensors = [h if isinstance(h, torch.Tensor) else long_tensor(h) for h in hosts]
    if device.type != "cuda":
        return [t.to(device) for t in tensors]
    flat = upload(torch.cat([t.reshape(-1) for t in tensors]), device)
    return [piece.view(t.shape) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def long_tensor(values: Sequence[int] | array) -> torch.Tensor:
    """A 1-D int64 tensor of ``values``, through a typed array (a few times faster than ``torch.tensor`` of a list)."""
    values = values if isinstance(values, array) else array("q", values)
    return torch.frombuffer(values, dtype=torch.long) if len(values) else torch.zeros(0, dtype=torch.long)


def _left_padded(rows: list[list[int]], width: int, fill: int = 0) -> torch.Tensor:
    """``rows`` left-padded with ``fill`` to ``width`` columns, as one tensor."""
    flat: list[int] = []
    pad = [fill] * width
    for r in rows:  # list extends, then one conversion: the fastest way from Python lists
        flat += pad[: width - len(r)]
        flat += r
    return long_tensor(flat).view(len(rows), width)


def segments(nodes: list[Node], members: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``members``' token segments as one left-padded batch: ids, a mask of their own tokens, and their positions
    (each segment continues its path at ``start``)."""
    ws = max(len(nodes[i].tokens) for i in members)
    ids = _left_padded([nodes[i].tokens for i in members], ws)
    own = _left_padded([[1] * len(nodes[i].tokens) for i in members], ws)
    pos = _left_padded([list(range(nodes[i].start, nodes[i].start + len(nodes[i].tokens))) for i in members], ws)
    return ids, own, pos


def forward_plan(nodes: list[Node], min_saving: int, max_rows: int = 256, max_tokens: int = 16384) -> list[list[int]]:
    """The forwards that compute ``nodes`` (levels from 0; a node of level -1 is already computed): level by level,
    each level's segments bucketed by length at least cost (:func:`length_buckets`)."""
    plan = []
    for level in range(max(n.level for n in nodes) + 1):
        here = [i for i, n in enumerate(nodes) if n.level == level]
        for bucket in length_buckets([len(nodes[i].tokens) for i in here], max_rows, max_tokens, overhead=min_saving):
            plan.append([here[j] for j in bucket])
    return plan


def default_min_saving(device: torch.device) -> int:
    """Token computations one more forward must save to be worth it: 64 on a CPU, where a forward costs about its
    weight traffic; 8192 on a GPU, where an eager forward costs ~30 ms of kernel launches, the time of ~10^4
    prompt tokens."""
    return 8192 if device.type == "cuda" else 64


def length_buckets(lengths: list[int], max_rows: int, max_tokens: int = 16384, overhead: int = 64) -> list[list[int]]:
    """Indices grouped into padded batches of least cost: each batch costs ``overhead`` tokens (one forward streams
    every weight) plus its rows times its longest length; exact by dynamic programming over the sorted lengths."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):  # best[j]: cost of the j shortest rows; the last batch is order[i:j]
        width = lengths[order[j - 1]]
        for i in range(j - 1, max(-1, j - 1 - max_rows), -1):
            if width * (j - i) > max_tokens and j - i > 1:
                break
            cost = best[i] + overhead + width * (j - i)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets, j = [], n
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]


class _Preallocated(DynamicLayer):
    """One layer's keys and values in a buffer with room for the tokens still to come, written in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.kbuf, self.vbuf, self.length = keys, values, length
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        self.kbuf[:, :, self.length : self.length + n] = key_states
        self.vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (finished rows leave the batch)."""
        self.kbuf, self.vbuf = self.kbuf.index_select(0, rows), self.vbuf.index_select(0, rows)
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]


def cache_keyword(model: torch.nn.Module) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values``, whichever the model's forward takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _cache(layers: list[DynamicLayer]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers, cache.layer_class_to_replicate = layers, None
    return cache


def plain_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The output layer when the logits are a plain linear map of the decoder's last hidden state (no soft-capping,
    no logit scale), so a few vocabulary rows can be scored alone; None otherwise, or when ZeRO-3 keeps only a
    shard of its weight here."""
    config, head = model.config, model.get_output_embeddings()
    plain = (
        type(head) is torch.nn.Linear
        and not getattr(config, "final_logit_softcapping", None)
        and not getattr(config, "logit_scale", None)
        and not hasattr(head.weight, "ds_id")
    )
    return head if plain else None


def next_allowed(options: list[list[int]], prefix: list[int], eos: int) -> list[int]:
    """Tokens that continue some legal spelling after ``prefix`` (end-of-text once a spelling is complete)."""
    n = len(prefix)
    nxt = {o[n] for o in options if len(o) > n and o[:n] == prefix}
    if any(o == prefix for o in options) or not nxt:
        nxt.add(eos)
    return sorted(nxt)


def through_stop(tokens: Sequence[int], stop_ids: set[int]) -> int:
    """How many of ``tokens`` a completion keeps: up to and including the first stop token (all, if none)."""
    return next((j + 1 for j, t in enumerate(tokens) if t in stop_ids), len(tokens))


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor, block: int = 256) -> torch.Tensor:
    """Per row of ``probs`` (rows, n), the first index whose cumulative probability reaches ``(1 - u) * total``:
    inverse-CDF sampling, one uniform ``u`` per row (rows, 1) instead of one per entry. ``1 - u`` lies in (0, 1], so
    the index found always has positive probability. A long row goes in two levels, first its blocks of ``block``
    entries, then the entries of the one block chosen: a GPU scans a vocabulary-long row slowly (~140 us for
    256 x 49,152 on an H200), its block sums and a single block quickly."""
    rows, width = probs.shape
    if width <= 4 * block:
        cdf = probs.cumsum(-1)
        return torch.searchsorted(cdf, (1.0 - uniform) * cdf[:, -1:]).squeeze(-1).clamp(max=width - 1)
    n = -(-width // block)
    blocks = (probs if width == n * block else F.pad(probs, (0, n * block - width))).view(rows, n, block)
    sums = blocks.sum(-1)
    cdf = sums.cumsum(-1)
    u = (1.0 - uniform) * cdf[:, -1:]
    b = torch.searchsorted(cdf, u).clamp(max=n - 1)  # the first block whose end reaches u: cdf[b - 1] < u
    inner = blocks.gather(1, b[:, :, None].expand(rows, 1, block)).squeeze(1).cumsum(-1)
    # what u leaves inside the block is positive (u > cdf[b - 1] as floats); it is capped at the block's own total,
    # which the block sums may round past, so the entry found always raises the block's running sum
    rest = torch.minimum(u - F.pad(cdf, (1, 0)).gather(1, b), inner[:, -1:])
    t = torch.searchsorted(inner, rest).clamp(max=block - 1)
    return (b * block + t).squeeze(-1).clamp(max=width - 1)


@dataclass
class Sampled:
    """One row's completion: token ids, their sampling log-probabilities, and the allowed ids at each step."""

    tokens: list[int]
    logprobs: list[float]
    allowed: list[list[int]] | None


class Decoder:
    """Sampling for one model: ``decode(prompts, ...)`` returns a :class:`Sampled` per prompt."""

    def __init__(
        self,
        model: torch.nn.Module,
        eos: int,
        stop_ids: set[int],
        min_saving: int | None = None,
        max_rows: int = 256,
        graphs: bool | str = True,
        kept_tokens: int = 16384,
        pack: bool = True,
    ):
        """``min_saving``: token computations one more forward must save to be worth it (default:
        :func:`default_min_saving`). ``pack``: prepack the CPU linear layers' weights inside a session."""
        self.model, self.eos, self.stop_ids = model, eos, set(stop_ids) | {eos}
        if min_saving is None:
            min_saving = default_min_saving(next(model.parameters()).device)
        self.graphs, self._steps = graphs, {}  # CUDA-graph forwards by their bucketed shapes, least recently used first
        # most bytes of key/value buffers the steps may hold (None: a quarter of the GPU)
        self.graph_bytes: int | None = None
        self.min_saving, self.max_rows, self.pack = min_saving, max_rows, pack
        self.kw = cache_keyword(model)
        self.head = plain_head(model)  # restricted logits need a plain linear output layer
        self.supported = supports(model)  # a model the fixed-shape forwards reproduce
        # kept prefixes: prefix -> the pool rows holding its keys and values, a row per token, least recently used
        # first; the pool is one tensor (rows, 2, layers, heads, dim), so keeping and reading many prefixes is one
        # copy each way whatever their number (on a GPU such bookkeeping is bound by kernel launches). It grows to
        # at most kept_tokens rows and keeps its memory from one session to the next
        self._kept: OrderedDict[tuple[int, ...], list[int]] | None = None
        self._pool: torch.Tensor | None = None
        self._free: list[int] = []  # pool rows no kept prefix holds
        # shortest prefix worth keeping; most tokens kept (SmolLM2 in float32: 46 KB of keys and values per token)
        self.least_kept, self.kept_tokens = 8, kept_tokens

    @contextmanager
    def session(self) -> Iterator[None]:
        """Within it, each call's shared prompt prefixes are kept for the next calls and (on a CPU) the linear
        layers run on prepacked weights. The caller promises that the model's weights (and the active adapter) do not
        change inside; everything kept is dropped on leaving."""
        outer = self._kept
        if outer is None:
            self._kept = OrderedDict()
        try:
            with packed_linears(self.model) if self.pack and outer is None else nullcontext():
                yield
        finally:
            self._kept = outer
            if outer is None and self._pool is not None:  # every row free again; the memory stays for the next
                self._free = list(range(len(self._pool)))  # session (a fresh CPU allocation is slow to touch)

    def _keep(self, nodes: list[Node], spans: list[list[int]], store: torch.Tensor) -> None:
        """Keep the keys and values of every row's whole prompt (a game's next prompt may extend it: a growing
        history) and of the deepest prefixes that several rows shared (the next call's rows may share them), least
        recently used out beyond ``kept_tokens`` tokens. The new ones go to free pool rows in one copy."""
        rows = [len(n.ends) for n in nodes]
        for i in range(len(nodes) - 1, -1, -1):
            if nodes[i].parent >= 0:
                rows[nodes[i].parent] += rows[i]
        shared_below = [False] * len(nodes)
        for i, n in enumerate(nodes):
            if n.parent >= 0 and rows[i] >= 2:
                shared_below[n.parent] = True
        chosen: list[tuple[tuple[int, ...], int]] = []  # (prefix, node) in node order
        for i, n in enumerate(nodes):
            if not (n.ends or (rows[i] >= 2 and not shared_below[i])) or len(spans[i]) < self.least_kept:
                continue
            tokens, j = [], i
            while j >= 0:
                tokens[:0] = nodes[j].tokens
                j = nodes[j].parent
            chosen.append((tuple(tokens), i))
        for key, _ in chosen:  # kept ones this call chose again are the most recently used
            if key in self._kept:
                self._kept.move_to_end(key)
        new = {key: i for key, i in chosen if key not in self._kept}  # distinct prefixes, node order
        need = sum(len(spans[i]) for i in new.values())
        while new and need > self.kept_tokens:  # more than fits: the first ones of this call go unkept
            need -= len(spans[new.pop(next(iter(new)))])
        size = sum(map(len, self._kept.values()))
        while self._kept and size + need > self.kept_tokens:
            freed = self._kept.popitem(last=False)[1]
            self._free += freed
            size -= len(freed)
        if not new:
            return
        if len(self._free) < need:  # grow the pool (rows keep their numbers), at most to kept_tokens rows
            have = 0 if self._pool is None else len(self._pool)
            grown = store.new_empty(
                min(self.kept_tokens, max(2 * have, have + need - len(self._free))), *store.shape[1:]
            )
            if self._pool is not None:
                grown[:have] = self._pool
            self._free += range(have, len(grown))
            self._pool = grown
        dest = self._free[len(self._free) - need :]
        del self._free[len(self._free) - need :]
        source, at = [], 0
        for key, i in new.items():
            self._kept[key] = dest[at : at + len(spans[i])]
            at += len(spans[i])
            source += spans[i]
        source = upload(source, store.device)
        if dest == list(range(dest[0], dest[0] + need)):  # one run of rows: gathered straight into the pool
            torch.index_select(store, 0, source, out=self._pool[dest[0] : dest[0] + need])
        else:
            self._pool.index_copy_(0, upload(dest, store.device), store.index_select(0, source))

    # -- prefill ---------------------------------------------------------------------------------------
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

    def prefill(self, prompts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every prompt run through the model along its radix-tree path; returns the keys and values of every row's
        prompt left-padded to ``width``, as (rows, width, 2, layers, heads, head_dim), and last-token logits.

        Keys and values of every node's tokens go to one flat store, a row per token holding every layer's keys and
        values (row 0 all zeros for padding), so a batch's past, a kept prefix and the final cache are each one
        gather, whatever the tree's shape (on a GPU, kernel launches rather than bytes bound such bookkeeping).
        """
        device = next(self.model.parameters()).device
        nodes = radix_tree(prompts, self.min_saving)
        nodes, cached = _reuse(nodes, self._kept, self.least_kept) if self._kept is not None else (nodes, {})
        plan = [
            (members, max(nodes[i].start for i in members), max(len(nodes[i].tokens) for i in members))
            for members in forward_plan(nodes, self.min_saving, self.max_rows, max(16384, 4 * self.min_saving))
        ]
        # (members, past width, segment width), in dependency order
        offset = [0] * len(nodes)  # store row of each node's first token
        used = 1
        for i in cached:  # prefixes computed by an earlier call of this session come first
            offset[i] = used
            used += len(nodes[i].tokens)
        start = used
        for members, _, ws in plan:
            for r, i in enumerate(members):
                offset[i] = used + r * ws + ws - len(nodes[i].tokens)
            used += len(members) * ws
        total = used  # rows of the store: padding row 0, kept prefixes, then every planned forward's segments
        spans: list[list[int]] = [[] for _ in nodes]  # store rows of each node's whole prompt prefix
        for i, n in enumerate(nodes):  # parents come first
            spans[i] = (spans[n.parent] if n.parent >= 0 else []) + list(range(offset[i], offset[i] + len(n.tokens)))
        store: torch.Tensor | None = None  # (total, 2, layers, heads, dim)
        if cached:  # the kept rows, in one copy, to store rows 1 .. start - 1
            store = self._pool.new_zeros(total, *self._pool.shape[1:])
            kept = [
                r for i, rows in cached.items() for r in rows[nodes[i].start : nodes[i].start + len(nodes[i].tokens)]
            ]
            store[1:start] = self._pool[upload(kept, device)]
        last = None
        used = start
        for members, wp, ws in plan:
            b = len(members)
            ids, own, pos = segments(nodes, members)
            index = _left_padded([spans[nodes[i].parent] if nodes[i].start else [] for i in members], wp)
            mask = torch.cat([(index > 0).long(), own], dim=1)  # store row 0 is padding, no span holds it
            index, ids, own, pos, mask, where = upload_all([index, ids, own, pos, mask, members], device)
            static = self._static_prefill(b, ws, wp, device)
            if static is not None:  # a fixed-shape forward, replayed as a CUDA graph on a GPU
                if store is None:
                    store = static.kv.new_zeros(total, *static.kv.shape[2:])
                logits, kv = static.run(ids, own, pos, index if wp else None, store)
                store[used : used + b * ws].view(kv.shape).copy_(kv)
            else:
                logits, layers = self._forward(ids, mask, pos, store[index] if wp else None)
                k0 = layers[0][0]
                if store is None:
                    store = k0.new_zeros(total, 2, len(layers), k0.shape[1], k0.shape[3])
                rows = store[used : used + b * ws].view(b, ws, 2, len(layers), k0.shape[1], k0.shape[3])
                for j, (k, v) in enumerate(layers):  # (b, heads, wp + ws, dim) -> store rows (b, ws, heads, dim)
                    rows[:, :, 0, j] = k[:, :, wp:].transpose(1, 2)
                    rows[:, :, 1, j] = v[:, :, wp:].transpose(1, 2)
            if last is None:
                last = logits.new_empty(len(nodes), logits.shape[-1])
            last[where] = logits
            used += b * ws
        if self._kept is not None:
            self._keep(nodes, spans, store)
        row_node = [0] * len(prompts)
        for i, n in enumerate(nodes):
            for r in n.ends:
                row_node[r] = i
        index, row_node = upload_all(
            [_left_padded([spans[row_node[r]] for r in range(len(prompts))], width), row_node], device
        )
        return store[index], last[row_node]

    # -- sampling --------------------------------------------------------------------------------------
    @staticmethod
    def sample(
        logits: torch.Tensor,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None,
        uniform: torch.Tensor | None = None,
    ):
        """Tokens drawn from ``softmax(logits / T)`` (nucleus-truncated when top_p < 1; greedy when T = 0) and
        their log-probabilities under the untruncated distribution. ``uniform``: the rows' U(0, 1) draws, (rows, 1),
        if the caller made them (else drawn from ``generator``)."""
        logits = logits.float()
        logp = torch.log_softmax(logits if temperature in (0, 1) else logits / temperature, dim=-1)
        if temperature == 0:
            tokens = logits.argmax(-1)
        else:
            probs = logp.exp()
            if top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                keep = sorted_p.cumsum(-1) - sorted_p < top_p
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
            if uniform is None:
                uniform = torch.rand(len(probs), 1, device=probs.device, generator=generator)
            tokens = inverse_cdf(probs, uniform)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)

    @torch.no_grad()
    def decode(
        self,
        prompts: list[list[int]],
        max_new: int,
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
        if self._graphs_wanted(device):  # the weights may have changed since the last call, never within one
            llama_of(self.model).refresh()
        generator = torch.Generator(device=device).manual_seed(seed)
        n = len(prompts)
        legal = legal or [None] * n
        out = [Sampled([], [], [] if legal[i] is not None else None) for i in range(n)]
        width = max(len(p) for p in prompts)
        past, logits = self.prefill(prompts, width)
        lengths = torch.tensor([len(p) for p in prompts])
        columns = torch.arange(width + max_new)
        mask, positions = upload_all(
            [((columns >= width - lengths[:, None]) & (columns < width)).long(), lengths], device
        )
        static = self._static_step(n, width + max_new, device)
        if static is not None:  # a CUDA graph replays each step; finished rows stay in it, their outputs unread
            static.load(past, mask[:, :width])
            if stopped is None and all(x is None for x in legal):
                return self._decode_on_device(
                    static, logits, out, width, positions, max_new, temperature, top_p, generator
                )
            layers = []
        else:
            buf = past.new_zeros(2, past.shape[3], n, past.shape[4], width + max_new, past.shape[5])  # one block
            buf[:, :, :, :, :width] = past.permute(2, 3, 0, 4, 1, 5)
            layers = [_Preallocated(buf[0, j], buf[1, j], width) for j in range(buf.shape[1])]
        cache = _cache(layers)
        live = list(range(n))
        rows = None  # the live rows as a device tensor, once some have finished
        nxt = {r: next_allowed(legal[r], [], self.eos) for r in range(n) if legal[r] is not None}  # per row, next
        for step in range(max_new):
            allowed = [nxt.get(r) for r in live]
            logits = self._masked(logits, allowed)
            uniform = torch.rand(n, 1, device=device, generator=generator)
            tokens, logps = self.sample(
                logits, temperature, top_p, generator, uniform if rows is None else uniform[rows]
            )
            tokens, logps = tokens.tolist(), logps.tolist()
            keep = []
            for j, r in enumerate(live):
                o = out[r]
                o.tokens.append(tokens[j])
                o.logprobs.append(logps[j])
                if o.allowed is not None:
                    o.allowed.append(allowed[j])
                    nxt[r] = next_allowed(legal[r], o.tokens, self.eos)
                done = tokens[j] in self.stop_ids or (stopped is not None and stopped(r, o.tokens))
                if not done and nxt.get(r) == [self.eos]:
                    if step + 1 < max_new:  # a forced end-of-text: probability 1, no forward needed
                        o.tokens.append(self.eos)
                        o.logprobs.append(0.0)
                        o.allowed.append([self.eos])
                    done = True
                if not done:
                    keep.append(j)
            if not keep or step + 1 == max_new:
                break
            dropped = len(keep) < len(live)
            live, tokens = [live[j] for j in keep], [tokens[j] for j in keep]
            if dropped:
                rows = upload(live, device)
            if static is not None:  # every row stays in the graph; finished ones are fed end-of-text, unread
                fed = upload(tokens, device)
                if rows is not None:
                    fed = torch.full((n,), self.eos, dtype=torch.long, device=device).index_copy_(0, rows, fed)
                logits = static.run(fed, positions + step, width + step)
                logits = logits if rows is None else logits[rows]
                continue
            if dropped:  # finished rows leave the batch
                index = upload(keep, device)
                for layer in layers:
                    layer.select(index)
                mask, positions = mask.index_select(0, index), positions.index_select(0, index)
            col = width + step
            mask[:, col] = 1
            ids = upload(tokens, device)[:, None]
            logits = self._step(ids, mask[:, : col + 1], positions[:, None], cache, self._restriction(live, nxt))
            positions = positions + 1
        return out

    def _decode_on_device(
        self,
        static,
        logits: torch.Tensor,
        out: list[Sampled],
        width: int,
        positions: torch.Tensor,
        max_new: int,
        temperature: float,
        top_p: float,
        generator: torch.Generator,
        check: int = 8,
    ) -> list[Sampled]:
        """Decoding with neither constraints nor stop strings, without waiting for the GPU at every step: tokens go
        from one step's sampling straight into the next step's graph, finished rows are fed end-of-text, and the
        host reads the tokens once at the end (and whether every row has finished every ``check`` steps). The host
        queues step after step while the GPU runs them; the sampled tokens are those of the per-step loop."""
        n, device = len(out), logits.device
        stop = upload(sorted(self.stop_ids), device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        drawn, scores = [], []
        for step in range(max_new):
            uniform = torch.rand(n, 1, device=device, generator=generator)
            tokens, logps = self.sample(logits, temperature, top_p, generator, uniform)
            tokens = tokens.masked_fill(done, self.eos)  # finished rows: fed end-of-text, their samples never read
            drawn.append(tokens)
            scores.append(logps)
            done = done | torch.isin(tokens, stop)
            if step + 1 == max_new or (step + 1) % check == 0 and bool(done.all()):
                break
            logits = static.run(tokens, positions + step, width + step)
        tokens, logps = torch.stack(drawn, 1).tolist(), torch.stack(scores, 1).tolist()
        for o, row, lp in zip(out, tokens, logps):
            end = through_stop(row, self.stop_ids)
            o.tokens, o.logprobs = row[:end], lp[:end]
        return out

    def _graphs_wanted(self, device: torch.device) -> bool:
        """Whether fixed-shape forwards (CUDA graphs) apply: on a GPU, for a model they reproduce (``graphs=True``),
        or anywhere, eagerly on a CPU, with ``graphs="always"`` (tests)."""
        wanted = self.graphs == "always" or (self.graphs and device.type == "cuda")
        return bool(wanted) and self.supported

    def _graphed(self, key: tuple, need: int, make: Callable[[], object]):
        """The fixed-shape forward stored under ``key``, made if new. Each holds its own buffers (``need`` bytes), so
        the least recently used are dropped (their memory and graph freed) beyond ``graph_bytes``: a quarter of the
        GPU's memory unless set."""
        step = self._steps.pop(key, None)
        if step is None:
            if self.graph_bytes is None:
                device = next(self.model.parameters()).device
                self.graph_bytes = (
                    torch.cuda.get_device_properties(device).total_memory // 4 if device.type == "cuda" else 1 << 62
                )
            while self._steps and sum(s.nbytes for s in self._steps.values()) + need > self.graph_bytes:
                self._steps.pop(next(iter(self._steps)))  # least recently used first
            step = make()
        self._steps[key] = step  # most recently used last
        return step

    def _static_step(self, rows: int, length: int, device: torch.device):
        """The CUDA-graph decode step for a batch of ``rows`` and ``length`` columns, shapes bucketed (rows to a power
        of two, columns to a multiple of 64) so graphs are reused across calls; None where it does not apply."""
        if not self._graphs_wanted(device):
            return None
        key = (power_of_two(rows), round_up(length))
        return self._graphed(key, step_bytes(self.model, *key), lambda: StaticStep(self.model, *key))

    def _static_prefill(self, rows: int, width: int, past: int, device: torch.device):
        """The CUDA-graph prefill forward for ``rows`` segments of ``width`` tokens on ``past`` columns, shapes
        bucketed (rows and, up to 64, the width to a power of two; beyond, the width and the past to a multiple of
        64) so graphs are reused across calls and plays; None where it does not apply or the shapes are too large
        to be worth a buffer (over 64k tokens of keys and values)."""
        if not self._graphs_wanted(device):
            return None
        r, w, p = power_of_two(rows), power_of_two(width) if width <= 64 else round_up(width), round_up(past)
        if r * (w + p) > 65536:
            return None
        key = ("prefill", r, w, p)
        return self._graphed(key, prefill_bytes(self.model, r, w, p), lambda: StaticPrefill(self.model, r, w, p))

    def _restriction(self, live: list[int], nxt: dict[int, list[int]]) -> torch.Tensor | None:
        """The union of the next allowed tokens when every live row is constrained (None: full vocabulary)."""
        if self.head is None or any(r not in nxt for r in live):
            return None
        return torch.tensor(sorted({t for r in live for t in nxt[r]}), device=self.head.weight.device)

    def _step(self, ids, mask, positions, cache, restrict: torch.Tensor | None) -> torch.Tensor:
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

    @staticmethod
    def _masked(logits: torch.Tensor, allowed: list[list[int] | None]) -> torch.Tensor:
        """Logits with every disallowed token at -inf (rows without a constraint untouched); one scatter."""
        if all(a is None for a in allowed):
            return logits
        rows = [j for j, a in enumerate(allowed) for _ in (a or ())]
        cols = [t for a in allowed for t in (a or ())]
        keep = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        keep[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)] = True
        free = [j for j, a in enumerate(allowed) if a is None]
        if free:
            keep[torch.tensor(free, device=logits.device)] = True
        return logits.float().masked_fill(~keep, float("-inf"))
