"""One decode step of a Llama-family model with static shapes, replayable as a CUDA graph.

Eager decoding on a GPU is bound by kernel launches (about 30 layers x a dozen kernels per token: 30-50 ms a step
for a 135M model whatever the batch), far above the memory-bandwidth floor. A step whose every tensor has a fixed
shape and address can be captured once as a CUDA graph and replayed for the cost of one launch (the approach of
vLLM and gpt-fast). This step is written with the model's own modules (norms, projections, rotary embedding, MLP,
output layer) so it computes what ``LlamaForCausalLM.forward`` computes, with the keys and values of every row in
a buffer of fixed length: a step writes its token's keys and values at column ``col`` and attends over the whole
buffer under a boolean mask of the columns each row has filled. Only plain Llama-architecture models (SmolLM2,
Llama, Qwen2-style without biases) qualify; anything else (a PEFT wrapper, another architecture) decodes eagerly.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a plain Llama-family causal LM this step reproduces."""
    config = getattr(model, "config", None)
    return (type(model).__name__ == "LlamaForCausalLM" and not hasattr(model, "peft_config")
            and type(model.get_output_embeddings()) is torch.nn.Linear
            and not getattr(config, "attention_bias", False) and not getattr(config, "mlp_bias", False))


def step_bytes(model: torch.nn.Module, rows: int, length: int) -> int:
    """Bytes of the key and value buffers a :class:`StaticStep` of ``rows`` x ``length`` holds."""
    c, p = model.config, next(model.parameters())
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_hidden_layers * rows * c.num_key_value_heads * length * head_dim * p.element_size()


def _norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``LlamaRMSNorm``'s arithmetic (in float32, scaled in the input's dtype) through ``F.rms_norm``."""
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon).to(x.dtype)


class StaticStep:
    """Keys/values of ``rows`` rows in buffers of ``length`` columns, and one decode step over them."""

    def __init__(self, model: torch.nn.Module, rows: int, length: int):
        self.model, self.decoder = model, model.get_decoder()
        c = model.config
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        p = next(model.parameters())
        shape = (rows, self.kv_heads, length, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.decoder.layers]
        self.values = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.decoder.layers]
        self.mask = torch.zeros(rows, 1, 1, length, dtype=torch.bool, device=p.device)
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=p.device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=p.device)
        self.col = torch.zeros(1, dtype=torch.long, device=p.device)
        half = self.head_dim // 2  # the two halves of each head swapped: rotate_half's order
        self.swap = torch.cat((torch.arange(half, self.head_dim), torch.arange(half))).to(p.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: Exception | None = None  # why capture failed, if it did
        self.logits: torch.Tensor | None = None
        self.nbytes = step_bytes(model, rows, length)

    def load(self, keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor) -> None:
        """Fill the first columns from a prefilled cache (rows, kv_heads, width, head_dim) and its 2-D mask."""
        rows, width = mask.shape
        for buf, src in zip(self.keys + self.values, keys + values):
            buf.zero_()
            buf[:rows, :, :width] = src[:, :, :width]
        self.mask.zero_()
        self.mask[:rows, 0, 0, :width] = mask.bool()

    @torch.no_grad()
    def forward(self) -> torch.Tensor:
        """Logits (rows, vocab) after the tokens in ``ids`` at ``positions``, written at column ``col``.

        The same arithmetic as the model's forward with fewer kernels, since a replayed step is bound by their count:
        the mask becomes additive once per step, not once per layer inside attention; queries and keys are rotated
        together, and ``rotate_half(x) * sin`` is taken as ``x[..., swap] * sin_signed`` (negation is exact, so the
        products are the same floats); the RMS norms go through ``F.rms_norm`` (the same operations on a CPU, one fused
        kernel on a GPU)."""
        d = self.decoder
        x = d.embed_tokens(self.ids)
        cos, sin = d.rotary_emb(x, self.positions)  # (rows, 1, head_dim)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # over heads
        half = self.head_dim // 2
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        rows = x.shape[0]
        self.mask.index_fill_(3, self.col, True)
        bias = torch.zeros(self.mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~self.mask, float("-inf"))
        for i, layer in enumerate(d.layers):
            attn = layer.self_attn
            h = _norm(layer.input_layernorm, x)
            q = attn.q_proj(h).view(rows, 1, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(rows, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(rows, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            qk = torch.cat((q, k), dim=1)
            qk = qk * cos + qk.index_select(-1, self.swap) * sin
            q, k = qk[:, :self.heads], qk[:, self.heads:]
            self.keys[i].index_copy_(2, self.col, k)
            self.values[i].index_copy_(2, self.col, v)
            o = F.scaled_dot_product_attention(q, self.keys[i], self.values[i], attn_mask=bias,
                                               scale=attn.scaling, enable_gqa=self.heads != self.kv_heads)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(rows, 1, -1))
            x = x + layer.mlp(_norm(layer.post_attention_layernorm, x))
        return self.model.get_output_embeddings()(_norm(d.norm, x))[:, -1].float()

    def run(self, ids: torch.Tensor, positions: torch.Tensor, col: int) -> torch.Tensor:
        """One step: eager on a CPU, a captured CUDA graph (captured on first use) on a GPU; eager there too after a
        capture failed (something in the step synchronised or left the stream, e.g. a forward hook that times it)."""
        rows = len(ids)
        self.ids[:rows, 0] = ids.view(-1)
        self.positions[:rows, 0] = positions.view(-1)
        self.col.fill_(col)
        if not self._on_gpu() or self.failed is not None:
            return self.forward()[:rows]
        if self.graph is None:
            saved = [t.clone() for t in (*self.keys, *self.values, self.mask)]
            try:
                self._capture()
            except Exception as exc:  # noqa: BLE001 - the step still computes eagerly
                self.graph, self.failed = None, exc
                warnings.warn(f"the CUDA-graph capture of the decode step failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); this step decodes eagerly "
                              f"(graphs=false turns capture off)", RuntimeWarning, stacklevel=2)
            for t, s in zip((*self.keys, *self.values, self.mask), saved):  # undo what warm-up and capture wrote
                t.copy_(s)
            self.col.fill_(col)
            if self.graph is None:
                return self.forward()[:rows]
        self.graph.replay()
        return self.logits[:rows]

    def _on_gpu(self) -> bool:
        return self.ids.device.type == "cuda"

    def _capture(self) -> None:
        """Warm up on a side stream (allocator, kernel selection), then capture one step as the graph."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.forward()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.forward()
