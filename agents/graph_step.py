"""Decode steps and prefill forwards of a Llama-family model with static shapes, replayable as CUDA graphs.

Eager decoding on a GPU is bound by kernel launches (about 30 layers x a dozen kernels per token: 30-50 ms a step
for a 135M model whatever the batch), far above the memory-bandwidth floor; an eager prefill forward is too (~40 ms
on an H200 for the few dozen new tokens per row of a game turn). A forward whose every tensor has a fixed shape and
address can be captured once as a CUDA graph and replayed for the cost of one launch (the approach of vLLM and
gpt-fast). These forwards are written with the model's own modules (norms, projections, rotary embedding, MLP,
output layer) so they compute what ``LlamaForCausalLM.forward`` computes:

- :class:`StaticStep`: the keys and values of every row in a buffer of fixed length; a step writes its token's keys
  and values at column ``col`` and attends over the whole buffer under a mask of the columns each row has filled.
- :class:`StaticPrefill`: segments of new tokens on keys and values gathered from the decoder's store, both
  left-padded to bucketed widths; it writes the new keys and values in the store's layout.

Only plain Llama-architecture models (SmolLM2, Llama, Qwen2-style without biases) qualify; anything else (a PEFT
wrapper, another architecture) runs eagerly through transformers.
"""

from __future__ import annotations

import warnings
import weakref

import torch
import torch.nn.functional as F


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a plain Llama-family causal LM this step reproduces."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "LlamaForCausalLM"
        and not hasattr(model, "peft_config")
        and type(model.get_output_embeddings()) is torch.nn.Linear
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
    )


def step_bytes(model: torch.nn.Module, rows: int, length: int) -> int:
    """Bytes of the key and value buffers a :class:`StaticStep` of ``rows`` x ``length`` holds."""
    c, p = model.config, next(model.parameters())
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_hidden_layers * rows * c.num_key_value_heads * length * head_dim * p.element_size()


def _norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``LlamaRMSNorm`` in one fused kernel on a GPU: ``F.rms_norm`` with the weight. In float32 equal to the model's
    up to rounding; in bfloat16 it rounds once, after the weight, where the model also rounds before it (at most one
    unit in the last place apart)."""
    return F.rms_norm(x, (x.shape[-1],), norm.weight, eps=norm.variance_epsilon)


class _Llama:
    """The model's sizes and modules that a fixed-shape forward needs, and per layer its query/key/value projections
    as one weight and its gate/up projections as one, so each is one matrix product. The joined weights are copies:
    :meth:`refresh` (the decoder calls it once per call) copies them again in place (the captured graphs keep their
    addresses) when a weight of the model changed: an optimizer step bumps its version counter, a reassignment of
    ``.data`` moves it."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.decoder = model, model.get_decoder()
        c = model.config
        self.heads, self.kv_heads, self.layers = c.num_attention_heads, c.num_key_value_heads, c.num_hidden_layers
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        half = self.head_dim // 2  # the two halves of each head swapped: rotate_half's order
        self.swap = torch.cat((torch.arange(half, self.head_dim), torch.arange(half))).to(p.device)
        self.parts = [
            (
                (layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight),
                (layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight),
            )
            for layer in self.decoder.layers
        ]
        with torch.no_grad():
            self.qkv_w = [torch.cat(qkv) for qkv, _ in self.parts]
            self.gate_up_w = [torch.cat(gate_up) for _, gate_up in self.parts]
        self.sources = [w for qkv, gate_up in self.parts for w in (*qkv, *gate_up)]
        self.stamp = self._stamp()

    def _stamp(self) -> list[tuple[int, int]]:
        return [(w._version, w.data_ptr()) for w in self.sources]

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the model's current weights into the joined ones if any changed since the last copy."""
        stamp = self._stamp()
        if stamp != self.stamp:
            for (qkv, gate_up), a, b in zip(self.parts, self.qkv_w, self.gate_up_w):
                torch.cat(qkv, out=a)
                torch.cat(gate_up, out=b)
            self.stamp = stamp

    def zeros(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype or self.dtype, device=self.device)

    def rotary(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and the signed ``sin`` of ``positions``, broadcastable over heads: ``rotate_half(x) * sin`` is
        ``x[..., swap] * sin_signed`` (negation is exact, so the products are the same floats)."""
        cos, sin = self.decoder.rotary_emb(x, positions)
        half = self.head_dim // 2
        return cos.unsqueeze(1), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1).unsqueeze(1)

    def qkv(self, i: int, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Layer ``i``'s rotated queries and keys and its values of ``h`` (rows, tokens, hidden), each (rows, heads,
        tokens, dim): one product, the queries and keys rotated together."""
        rows, tokens = h.shape[:2]
        qkv = F.linear(h, self.qkv_w[i]).view(rows, tokens, self.heads + 2 * self.kv_heads, self.head_dim)
        qkv = qkv.transpose(1, 2)
        qk = qkv[:, : self.heads + self.kv_heads]
        qk = torch.addcmul(qk * cos, qk.index_select(-1, self.swap), sin)  # x cos + rotate_half(x) sin
        return qk[:, : self.heads], qk[:, self.heads :], qkv[:, self.heads + self.kv_heads :]

    def attend(self, i: int, x: torch.Tensor, q, *, keys, values, bias: torch.Tensor) -> torch.Tensor:
        """The rest of layer ``i`` after its keys and values are in place: attention, then the MLP, each residual
        added inside its output projection's product (``addmm``)."""
        layer = self.decoder.layers[i]
        rows, tokens, hidden = x.shape
        attn, mlp = layer.self_attn, layer.mlp
        o = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=bias, scale=attn.scaling, enable_gqa=self.heads != self.kv_heads
        )
        flat = x.reshape(rows * tokens, hidden)
        flat = torch.addmm(flat, o.transpose(1, 2).reshape(rows * tokens, -1), attn.o_proj.weight.t())
        gate, up = F.linear(_norm(layer.post_attention_layernorm, flat), self.gate_up_w[i]).chunk(2, dim=-1)
        return torch.addmm(flat, mlp.act_fn(gate) * up, mlp.down_proj.weight.t()).view(rows, tokens, hidden)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float logits of the last position of each row."""
        return self.model.get_output_embeddings()(_norm(self.decoder.norm, x[:, -1:]))[:, -1].float()


_LLAMAS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def llama_of(model: torch.nn.Module) -> _Llama:
    """The one :class:`_Llama` of ``model`` (its joined weights shared by every fixed-shape forward of it), made
    again if the model has moved to another device or dtype since."""
    p = next(model.parameters())
    llama = _LLAMAS.get(model)
    if llama is None or (llama.device, llama.dtype) != (p.device, p.dtype):
        llama = _LLAMAS[model] = _Llama(model)
    return llama


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean attention mask as the additive one SDPA would build from it, built once for every layer."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


class _Graphed:
    """A forward on fixed buffers: eager on a CPU, captured as a CUDA graph on first use and replayed on a GPU; eager
    there too after a capture failed (something in it synchronised or left the stream, e.g. a forward hook that
    times it). Subclasses name the buffers a forward writes that must survive the warm-up and capture."""

    graph: torch.cuda.CUDAGraph | None = None
    failed: Exception | None = None  # why capture failed, if it did
    output: torch.Tensor | None = None
    what = "forward"

    def forward(self) -> torch.Tensor:
        raise NotImplementedError

    def _state(self) -> list[torch.Tensor]:
        return []

    def _call(self) -> torch.Tensor:
        if not self._on_gpu() or self.failed is not None:
            return self.forward()
        if self.graph is None:
            saved = [t.clone() for t in self._state()]
            try:
                self._capture()
            except Exception as exc:  # noqa: BLE001 - the forward still computes eagerly
                self.graph, self.failed = None, exc
                warnings.warn(
                    f"the CUDA-graph capture of the {self.what} failed ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}); it runs eagerly "
                    f"(graphs=false turns capture off)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            for t, s in zip(self._state(), saved):  # undo what warm-up and capture wrote
                t.copy_(s)
            if self.graph is None:
                return self.forward()
        self.graph.replay()
        return self.output

    def _on_gpu(self) -> bool:
        return self.llama.device.type == "cuda"

    def _capture(self) -> None:
        """Warm up on a side stream (allocator, kernel selection), then capture one forward as the graph."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.forward()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = self.forward()


class StaticStep(_Graphed):
    """Keys/values of ``rows`` rows in buffers of ``length`` columns, and one decode step over them."""

    what = "decode step"

    def __init__(self, model: torch.nn.Module, rows: int, length: int):
        self.llama = m = llama_of(model)
        self.cache = m.zeros(2, m.layers, rows, m.kv_heads, length, m.head_dim)  # every layer's keys and values
        self.keys, self.values = list(self.cache[0]), list(self.cache[1])
        self.mask = m.zeros(rows, 1, 1, length, dtype=torch.bool)
        self.ids = m.zeros(rows, 1, dtype=torch.long)
        self.positions = m.zeros(rows, 1, dtype=torch.long)
        self.col = m.zeros(1, dtype=torch.long)
        self.nbytes = step_bytes(model, rows, length)

    def load(self, past: torch.Tensor, mask: torch.Tensor) -> None:
        """Fill the first columns from a prefill's (rows, width, 2, layers, kv_heads, head_dim) keys and values and
        their 2-D mask, in one copy. Columns past ``width`` and rows past ``rows`` keep what an earlier call left: the
        mask hides them (and a step writes its column before attending over it)."""
        rows, width = mask.shape
        self.cache[:, :, :rows, :, :width] = past.permute(2, 3, 0, 4, 1, 5)
        self.mask.zero_()
        self.mask[:rows, 0, 0, :width] = mask.bool()

    @torch.no_grad()
    def forward(self) -> torch.Tensor:
        """Logits (rows, vocab) after the tokens in ``ids`` at ``positions``, written at column ``col``.

        The same arithmetic as the model's forward with fewer kernels, since a replayed step is bound by their count:
        the mask becomes additive once per step, not once per layer inside attention; queries and keys are rotated
        together (:meth:`_Llama.rotary`); the RMS norms go through ``F.rms_norm`` (the same operations on a CPU, one
        fused kernel on a GPU)."""
        m = self.llama
        x = m.decoder.embed_tokens(self.ids)
        cos, sin = m.rotary(x, self.positions)
        self.mask.index_fill_(3, self.col, True)
        bias = _additive(self.mask, x.dtype)
        for i, layer in enumerate(m.decoder.layers):
            q, k, v = m.qkv(i, _norm(layer.input_layernorm, x), cos, sin)
            self.keys[i].index_copy_(2, self.col, k)
            self.values[i].index_copy_(2, self.col, v)
            x = m.attend(i, x, q, keys=self.keys[i], values=self.values[i], bias=bias)
        return m.logits(x)

    def _state(self) -> list[torch.Tensor]:
        return [self.cache, self.mask]

    def run(self, ids: torch.Tensor, positions: torch.Tensor, col: int) -> torch.Tensor:
        """One step (:class:`_Graphed`): logits of the first ``len(ids)`` rows."""
        rows = len(ids)
        self.ids[:rows, 0] = ids.view(-1)
        self.positions[:rows, 0] = positions.view(-1)
        self.col.fill_(col)
        return self._call()[:rows]


def prefill_bytes(model: torch.nn.Module, rows: int, width: int, past: int) -> int:
    """Bytes of the key and value buffers a :class:`StaticPrefill` of these shapes holds."""
    return step_bytes(model, rows, width + past)


class StaticPrefill(_Graphed):
    """A prefill forward with fixed shapes: ``rows`` segments of ``width`` new tokens (left-padded) on ``past``
    columns of keys and values gathered from the decoder's store (left-padded). It writes the new tokens' keys and
    values in the store's layout, a row per token of (2, layers, kv heads, dim), and returns each row's last logits.

    Query ``i`` sees key ``j`` when the row's mask allows ``j`` and ``j <= past + i`` (causal within the segment), as
    the model's forward with a 2-D attention mask does; every query also sees itself, so a padding query, whose
    output nobody reads, attends to something instead of to nothing."""

    what = "prefill"

    def __init__(self, model: torch.nn.Module, rows: int, width: int, past: int):
        self.llama = m = llama_of(model)
        self.rows, self.width, self.past_width = rows, width, past
        self.ids = m.zeros(rows, width, dtype=torch.long)
        self.positions = m.zeros(rows, width, dtype=torch.long)
        self.mask = m.zeros(rows, past + width, dtype=torch.bool)
        self.past = m.zeros(rows, past, 2, m.layers, m.kv_heads, m.head_dim)
        self.kv = m.zeros(rows, width, 2, m.layers, m.kv_heads, m.head_dim)
        query, key = torch.arange(width)[:, None] + past, torch.arange(past + width)[None, :]
        self.causal, self.own = (key <= query).to(m.device), (key == query).to(m.device)
        self.nbytes = prefill_bytes(model, rows, width, past)

    @torch.no_grad()
    def forward(self) -> torch.Tensor:
        """Last-position logits (rows, vocab); the new keys and values land in ``kv``."""
        m = self.llama
        x = m.decoder.embed_tokens(self.ids)
        cos, sin = m.rotary(x, self.positions)
        bias = _additive(self.mask[:, None, None, :] & self.causal | self.own, x.dtype)  # (rows, 1, width, all)
        for j, layer in enumerate(m.decoder.layers):
            q, k, v = m.qkv(j, _norm(layer.input_layernorm, x), cos, sin)
            self.kv[:, :, 0, j] = k.transpose(1, 2)
            self.kv[:, :, 1, j] = v.transpose(1, 2)
            if self.past_width:
                k = torch.cat((self.past[:, :, 0, j].transpose(1, 2), k), dim=2)
                v = torch.cat((self.past[:, :, 1, j].transpose(1, 2), v), dim=2)
            x = m.attend(j, x, q, keys=k, values=v, bias=bias)
        return m.logits(x)

    def run(
        self,
        ids: torch.Tensor,
        own: torch.Tensor,
        positions: torch.Tensor,
        *,
        index: torch.Tensor | None,
        store: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward of ``ids`` (b, ws) with their ``own`` mask and ``positions`` on the store rows ``index`` (b,
        wp; row 0 is padding) of ``store``: the b rows' last logits and their (b, ws, 2, layers, kv heads, dim) new
        keys and values (a view of ``kv``)."""
        b, ws = ids.shape
        wp = 0 if index is None else index.shape[1]
        at = self.width - ws
        self.ids.zero_()
        self.ids[:b, at:] = ids
        self.positions.zero_()
        self.positions[:b, at:] = positions
        self.mask.zero_()
        self.mask[:b, self.past_width + at :] = own.bool()
        if self.past_width:
            rows = torch.zeros(self.rows, self.past_width, dtype=torch.long, device=index.device)
            if wp:
                rows[:b, self.past_width - wp :] = index
                self.mask[:b, self.past_width - wp : self.past_width] = index > 0
            torch.index_select(store, 0, rows.view(-1), out=self.past.view(-1, *store.shape[1:]))
        return self._call()[:b], self.kv[:b, at:]
