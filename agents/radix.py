"""The radix tree of a batch's prompts, how its nodes are grouped into forwards, and the pool that keeps prefixes'
keys and values from one call to the next.

Every tree node's tokens run through the model once, level by level, each level one batched forward over the nodes'
segments on top of their ancestors' keys and values (the idea of SGLang's RadixAttention, Zheng et al. 2024, within
one call). Across calls, ``PrefixPool`` keeps the keys and values of each call's prompts and shared prefixes (least
recently used out), and ``reuse`` lets a later call's prompts skip what a kept prefix covers.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from selfplay.agents.device_io import left_padded, upload


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


def reuse(nodes: list[Node], kept: dict[tuple[int, ...], object], least: int) -> tuple[list[Node], dict[int, object]]:
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


def segments(nodes: list[Node], members: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``members``' token segments as one left-padded batch: ids, a mask of their own tokens, and their positions
    (each segment continues its path at ``start``)."""
    ws = max(len(nodes[i].tokens) for i in members)
    ids = left_padded([nodes[i].tokens for i in members], ws)
    own = left_padded([[1] * len(nodes[i].tokens) for i in members], ws)
    pos = left_padded([list(range(nodes[i].start, nodes[i].start + len(nodes[i].tokens))) for i in members], ws)
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


class PrefixPool:
    """Keys and values of prompt prefixes kept from one decoder call to the next, while the weights do not change.

    ``kept`` maps a prefix to the pool rows holding its keys and values, a row per token, least recently used first.
    The pool is one tensor (rows, 2, layers, heads, dim), so keeping and reading many prefixes is one copy each way
    whatever their number (on a GPU such bookkeeping is bound by kernel launches). It grows to at most ``limit`` rows
    and keeps its memory from one session to the next (a fresh CPU allocation is slow to touch).
    """

    def __init__(self, limit: int = 16384, least: int = 8):
        """``limit``: most tokens kept (SmolLM2 in float32: 46 KB of keys and values per token); ``least``: the
        shortest prefix worth keeping."""
        self.limit, self.least = limit, least
        self.kept: OrderedDict[tuple[int, ...], list[int]] = OrderedDict()
        self.rows: torch.Tensor | None = None
        self.free: list[int] = []  # pool rows no kept prefix holds

    def clear(self) -> None:
        """Forget every kept prefix; the memory stays."""
        self.kept.clear()
        self.free = list(range(len(self.rows))) if self.rows is not None else []

    def read(self, rows: list[int], device: torch.device) -> torch.Tensor:
        """The pool's ``rows``, in one gather."""
        return self.rows[upload(rows, device)]

    def keep(self, nodes: list[Node], spans: list[list[int]], store: torch.Tensor) -> None:
        """Keep the keys and values of every row's whole prompt (a game's next prompt may extend it: a growing
        history) and of the deepest prefixes that several rows shared (the next call's rows may share them), least
        recently used out beyond ``limit`` tokens. ``spans[i]``: the ``store`` rows of node i's whole prefix. The new
        ones go to free pool rows in one copy."""
        new = self._chosen(nodes, spans)
        need = sum(len(spans[i]) for i in new.values())
        while new and need > self.limit:  # more than fits: the first ones of this call go unkept
            need -= len(spans[new.pop(next(iter(new)))])
        size = sum(map(len, self.kept.values()))
        while self.kept and size + need > self.limit:
            freed = self.kept.popitem(last=False)[1]
            self.free += freed
            size -= len(freed)
        if not new:
            return
        self._grow(need, store)
        dest = self.free[len(self.free) - need :]
        del self.free[len(self.free) - need :]
        source, at = [], 0
        for key, i in new.items():
            self.kept[key] = dest[at : at + len(spans[i])]
            at += len(spans[i])
            source += spans[i]
        source = upload(source, store.device)
        if dest == list(range(dest[0], dest[0] + need)):  # one run of rows: gathered straight into the pool
            torch.index_select(store, 0, source, out=self.rows[dest[0] : dest[0] + need])
        else:
            self.rows.index_copy_(0, upload(dest, store.device), store.index_select(0, source))

    def _chosen(self, nodes: list[Node], spans: list[list[int]]) -> dict[tuple[int, ...], int]:
        """The prefixes worth keeping that are not kept yet, {prefix: node}, in node order; the kept ones chosen
        again become the most recently used."""
        rows = [len(n.ends) for n in nodes]
        for i in range(len(nodes) - 1, -1, -1):
            if nodes[i].parent >= 0:
                rows[nodes[i].parent] += rows[i]
        shared_below = [False] * len(nodes)
        for i, n in enumerate(nodes):
            if n.parent >= 0 and rows[i] >= 2:
                shared_below[n.parent] = True
        chosen: list[tuple[tuple[int, ...], int]] = []
        for i, n in enumerate(nodes):
            if not (n.ends or (rows[i] >= 2 and not shared_below[i])) or len(spans[i]) < self.least:
                continue
            tokens, j = [], i
            while j >= 0:
                tokens[:0] = nodes[j].tokens
                j = nodes[j].parent
            chosen.append((tuple(tokens), i))
        for key, _ in chosen:
            if key in self.kept:
                self.kept.move_to_end(key)
        return {key: i for key, i in chosen if key not in self.kept}

    def _grow(self, need: int, store: torch.Tensor) -> None:
        """Room for ``need`` more rows (rows keep their numbers), the pool at most ``limit`` rows."""
        if len(self.free) >= need:
            return
        have = 0 if self.rows is None else len(self.rows)
        grown = store.new_empty(min(self.limit, max(2 * have, have + need - len(self.free))), *store.shape[1:])
        if self.rows is not None:
            grown[:have] = self.rows
        self.free += range(have, len(grown))
        self.rows = grown
