"""A differentiable forward over token sequences that computes each shared prefix once.

The training pass scores many samples whose prompts share long runs (the system prompt and rules of a seat, a board
header, a GRPO group's whole prompt). The sequences form a radix tree (``agents/decode.radix_tree``); its nodes run
level by level, each level's segments bucketed by length, each segment on top of its ancestors' keys and values
(gathered per segment, so a prefix's gradient is the sum over every sequence below it). The same products as one
pass over whole rows, up to float rounding: the prefix sharing of SGLang's RadixAttention (Zheng et al. 2024),
with autograd through it, as "prefix grouping" does for GRPO.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from selfplay.agents.kv_cache import cache_keyword
from selfplay.agents.radix import Node, forward_plan, radix_tree, segments


def _costs(decoder: torch.nn.Module) -> tuple[float, float, float]:
    """Rough seconds per token, per extra forward (with its backward) and per segment, for :func:`tree_pays`."""
    cuda = next(decoder.parameters()).device.type == "cuda"
    params = sum(p.numel() for p in decoder.parameters()) - decoder.get_input_embeddings().weight.numel()
    layers = getattr(decoder.config, "num_hidden_layers", 1)
    # the GPU segment cost is measured: SmolLM2, 256 rows in 257 segments, bf16 on an H200 (benchmarks/update.py):
    # the tree pass took 1.03 s against the plain pass's 0.16 s, ~110 us per segment and layer (launch-bound)
    return 2 * params / (1e14 if cuda else 1e11), layers * (3e-3 if cuda else 1e-3), layers * (1.1e-4 if cuda else 4e-5)


def tree_pays(decoder: torch.nn.Module, whole_tokens: int, nodes: list[Node], plan: list[list[int]]) -> bool:
    """Whether the tree's saved token computations outweigh its extra forwards and bookkeeping, by a rough cost
    model: a token costs 2 x (parameters outside the embedding) FLOPs at 10^11 FLOP/s on a CPU, 10^14 on a GPU; a
    forward and its backward ~1 ms of launches and Python per layer (3 ms on a GPU, launch-bound when eager); each
    segment's gathered keys and values ~40 us per layer (110 us on a GPU). For a tiny model nothing pays; for SmolLM2 a shared system
    prompt does."""
    token_s, forward_s, segment_s = _costs(decoder)
    saved = (whole_tokens - sum(len(n.tokens) for n in nodes)) * token_s
    return saved > (len(plan) - 1) * forward_s + len(nodes) * segment_s


def tree_may_pay(decoder: torch.nn.Module, whole_tokens: int, distinct: int) -> bool:
    """False when even computing nothing at all would not pay for one segment per distinct sequence (the tree has
    at least that many): then the tree need not be built."""
    token_s, _, segment_s = _costs(decoder)
    return whole_tokens * token_s > distinct * segment_s


def tree_states(
    decoder: torch.nn.Module,
    sequences: list[list[int]],
    wanted: list[list[int]],
    *,
    min_saving: int = 64,
    max_rows: int = 256,
    nodes: list[Node] | None = None,
) -> torch.Tensor:
    """The decoder's last hidden states of ``sequences`` at positions ``wanted[i]`` of sequence i, as a (rows, most
    wanted, hidden) tensor (zeros past a row's own), differentiable. ``min_saving``: token computations one more
    forward must save (``radix_tree``); ``nodes``: the sequences' tree, when the caller has built it."""
    device = next(decoder.parameters()).device
    kw = cache_keyword(decoder)
    nodes = nodes if nodes is not None else radix_tree(sequences, min_saving)
    # per node: its path's keys and values per layer, (kv heads, path columns, dim), and the path's mask
    path_kv: list[list[tuple[torch.Tensor, torch.Tensor]] | None] = [None] * len(nodes)
    path_mask: list[torch.Tensor | None] = [None] * len(nodes)
    where: list[tuple[int, int, int]] = [(0, 0, 0)] * len(nodes)  # (output block, row, first column) of each node
    blocks: list[torch.Tensor] = []  # each forward's hidden states, (rows, segment width, hidden)
    for members in forward_plan(nodes, min_saving, max_rows):
        hidden, layers, mask = _forward(
            decoder, kw, nodes, members, path_kv=path_kv, path_mask=path_mask, device=device
        )
        for r, i in enumerate(members):
            path_kv[i] = [(k[r], v[r]) for k, v in layers]
            path_mask[i] = mask[r]
            where[i] = (len(blocks), r, hidden.shape[1] - len(nodes[i].tokens))
        blocks.append(hidden)
    ends = {r: i for i, n in enumerate(nodes) for r in n.ends}
    flat = torch.cat(
        [torch.zeros(1, blocks[0].shape[-1], dtype=blocks[0].dtype, device=device)]
        + [b.reshape(-1, b.shape[-1]) for b in blocks]
    )
    offsets = [1]
    for b in blocks:
        offsets.append(offsets[-1] + b.shape[0] * b.shape[1])
    width = max(map(len, wanted))
    index = torch.zeros(len(sequences), width, dtype=torch.long)
    for r, positions in enumerate(wanted):
        chain, j = [], ends[r]
        while j >= 0:
            chain.append(j)
            j = nodes[j].parent
        for c, p in enumerate(positions):
            node = next(i for i in chain if nodes[i].start <= p < nodes[i].start + len(nodes[i].tokens))
            block, row, first = where[node]
            index[r, c] = offsets[block] + row * blocks[block].shape[1] + first + p - nodes[node].start
    return flat[index.to(device)]


def _forward(decoder, kw: str, nodes: list[Node], members: list[int], *, path_kv, path_mask, device):
    """One batched forward of ``members``' segments on their parents' paths; returns the hidden states, per layer
    the keys and values of each member's whole path (past + segment) and the paths' masks."""
    b = len(members)
    parents = [nodes[i].parent for i in members]
    wp = max((path_mask[p].shape[0] for p in parents if p >= 0), default=0)
    ids, own, pos = (t.to(device) for t in segments(nodes, members))
    past_mask = torch.zeros(b, wp, dtype=torch.long, device=device)
    past = None
    if wp:
        layers = len(path_kv[parents[0]])
        past = []
        for layer in range(layers):
            keys, values = [], []
            for p in parents:  # above level 0 every node has a parent
                k, v = path_kv[p][layer]
                gap = wp - k.shape[1]  # left-pad each parent's path to the widest
                keys.append(torch.nn.functional.pad(k, (0, 0, gap, 0)))
                values.append(torch.nn.functional.pad(v, (0, 0, gap, 0)))
            past.append((torch.stack(keys), torch.stack(values)))
        for r, p in enumerate(parents):
            m = path_mask[p]
            past_mask[r, wp - m.shape[0] :] = m
    cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
    mask = torch.cat([past_mask, own], dim=1)
    hidden = decoder(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{kw: cache}
    ).last_hidden_state
    return hidden, [(layer.keys, layer.values) for layer in cache.layers], mask
