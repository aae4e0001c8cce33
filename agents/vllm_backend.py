"""Optional vLLM rollouts for GPU users: an LLM agent with ``backend=vllm`` samples through a vLLM engine colocated
in this process, and stays the same agent to the arena and the trainer.

- **One engine per model shape** (``engine_for``): built once from the model's config with dummy weights
  (``load_format="dummy"``, no tokenizer: prompts go in as token ids), in this process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0``; ``distributed_executor_backend="external_launcher"`` under
  ``accelerate launch``, one engine per rank, as TRL's colocated mode), taking ``vllm_memory`` of the GPU.
- **Weights synchronised before sampling** (``VLLMEngine.sync``): whenever the weights it would sample with differ
  from the engine's (an optimizer step anywhere in this process, an in-place change, another agent on the same
  engine), the model's weights are loaded into the engine (``load_weights``, HF names) with any LoRA adapter merged
  (``merged_weights``: W + B A scaled, computed out of place, never merge/unmerge, which rounds the base in bf16),
  and its prefix cache is reset. The same as TRL's colocated vLLM mode.
- **Exact log-probabilities**: the engine's kernels and bf16 sampling differ from the trainer's forward, so the
  sampled tokens' log-probabilities are recomputed by the agent's own model in one teacher-forced pass
  (``LLMAgent``), as the native decoder's are; the engine's own values are kept in ``meta["engine_logprobs"]``.
- Stop strings cut the tokens exactly where the native decoder stops; constrained decoding and the static cache
  are native-only (a clear error says so).

Nothing here imports vLLM until an engine is built; ``unavailable()`` says why one cannot be.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import torch

from selfplay.agents import weights as weight_modes


def unavailable() -> str | None:
    """Why a vLLM engine cannot run here (None when it can): the package or a CUDA GPU missing."""
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (pip install vllm, matching your torch)"
    if not torch.cuda.is_available():
        return "vLLM rollouts need a CUDA GPU and none is visible"
    return None


def _lora_layers():
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return ()
    return (LoraLayer,)


def merged_weights(model: torch.nn.Module, adapter: str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights ``model`` generates with, under the names of the plain Hugging Face model (what vLLM's
    ``load_weights`` reads): a PEFT model's base with adapter ``adapter`` merged into each LoRA layer
    (``W + scale * B @ A``, out of place), other adapters left out; tied weights once."""
    lora = _lora_layers()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if any(hasattr(p, "ds_id") and p.data.numel() == 0 for p in base.parameters()):  # gathered ones are whole
        raise ValueError(
            "vLLM rollouts cannot read ZeRO-3 partitioned weights outside a gathered rollout phase: use "
            "ZeRO stage 0-2 or backend=native"
        )
    seen: set[int] = set()
    inside: list[str] = []  # prefixes of LoRA layers: their children (base_layer, lora_A, ...) are not weights
    for prefix, module in base.named_modules():
        if any(prefix.startswith(p + ".") for p in inside):
            continue
        if lora and isinstance(module, lora):
            inside.append(prefix)
            layer = module.get_base_layer()
            weight = layer.weight.detach()
            if adapter is not None and adapter in module.lora_A:
                weight = weight + module.get_delta_weight(adapter).to(weight.dtype)  # else: the base is what it sees
            seen.add(id(layer.weight))
            yield f"{prefix}.weight", weight
            if getattr(layer, "bias", None) is not None:
                seen.add(id(layer.bias))
                yield f"{prefix}.bias", layer.bias.detach()
            continue
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                yield f"{prefix}.{name}" if prefix else name, p.detach()


def weights_key(model: torch.nn.Module, adapter: str | None) -> tuple:
    """Changes whenever the weights ``model`` samples with may have changed: another module or adapter, an optimizer
    step in this process (``agents.weights.note_update``), or an in-place change of any parameter."""
    return id(model), adapter, weight_modes.updates(), sum(p._version for p in model.parameters())


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}.get(dtype, "auto")


def config_dir(model: torch.nn.Module) -> str:
    """A directory holding just the model's ``config.json`` (architecture named), for an engine with dummy weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = json.loads(base.config.to_json_string(use_diff=False))  # what save_pretrained writes
    config["architectures"] = config.get("architectures") or [type(base).__name__]
    config.pop("quantization_config", None)
    folder = tempfile.mkdtemp(prefix="selfplay-vllm-")
    atexit.register(shutil.rmtree, folder, True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return folder


def _vllm() -> tuple[Callable, Callable, dict]:
    """vLLM's engine and sampling-parameter classes, and the engine options this vLLM and this process need."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: weights load in place
    import vllm

    extra = {}
    if "logprobs_mode" in {f.name for f in dataclasses.fields(vllm.EngineArgs)}:
        extra["logprobs_mode"] = "processed_logprobs"  # after temperature, comparable to ours
    if (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    ):
        extra["distributed_executor_backend"] = "external_launcher"  # one engine per rank, as TRL's colocated mode
    return vllm.LLM, vllm.SamplingParams, extra


class VLLMEngine:
    """A colocated vLLM engine that samples token ids with whichever weights it was last synchronised to.

    ``factory`` replaces ``vllm.LLM`` (a class with vLLM's offline interface and a ``SamplingParams`` attribute)."""

    def __init__(self, model: torch.nn.Module, memory: float = 0.3, seed: int = 0, factory: Callable | None = None):
        if factory is None:
            reason = unavailable()
            if reason:
                raise RuntimeError(f"backend=vllm: {reason}; use backend=native")
            factory, self._params, extra = _vllm()
        else:
            self._params, extra = factory.SamplingParams, {}
        dtype = next(model.parameters()).dtype
        self.llm = factory(
            model=config_dir(model),
            skip_tokenizer_init=True,
            load_format="dummy",
            dtype=_dtype_name(dtype),
            gpu_memory_utilization=memory,
            seed=seed,
            enable_prefix_caching=True,
            **extra,
        )
        self.loaded: tuple | None = None
        self.syncs = 0

    def sync(self, model: torch.nn.Module, adapter: str | None = None) -> bool:
        """Load ``model``'s weights (``adapter`` merged) into the engine unless it holds them already; True if loaded."""
        key = weights_key(model, adapter)
        if key == self.loaded:
            return False
        tensors = list(merged_weights(model, adapter))

        def load(engine_model: torch.nn.Module) -> int:
            loaded = engine_model.load_weights(tensors)
            return len(loaded) if loaded is not None else len(tensors)

        self.llm.apply_model(load)  # in this process: no copies of the tensors beyond vLLM's own
        self.llm.reset_prefix_cache()  # cached keys and values belong to the old weights
        self.loaded, self.syncs = key, self.syncs + 1
        return True

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        *,
        temperature: float,
        top_p: float,
        seeds: list[int],
        stop_ids: set[int],
    ) -> list[tuple[list[int], list[float]]]:
        """One sampled completion per prompt: (token ids, the engine's log-probabilities of them)."""
        params = [
            self._params(
                n=1,
                temperature=temperature,
                top_p=top_p if temperature > 0 else 1.0,
                max_tokens=max_new_tokens,
                seed=seed,
                stop_token_ids=sorted(stop_ids),
                logprobs=0,
                detokenize=False,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts], sampling_params=params, use_tqdm=False
        )
        out = []
        for request in outputs:
            answer = request.outputs[0]
            tokens = list(answer.token_ids)
            stop = getattr(answer, "stop_reason", None)
            if answer.finish_reason == "stop" and isinstance(stop, int) and (not tokens or tokens[-1] != stop):
                tokens.append(stop)  # a stop token the engine left out of the ids: the policy sampled it
            logprobs = [
                float(step[t].logprob) if step and t in step else float("nan")
                for t, step in zip(tokens, answer.logprobs or [None] * len(tokens))
            ]
            out.append((tokens, logprobs + [float("nan")] * (len(tokens) - len(logprobs))))
        return out


_ENGINES: dict[tuple, VLLMEngine] = {}
# config entries that change while a model lives (saving names its architecture, checkpointing turns the cache off)
VOLATILE = {
    "architectures",
    "_name_or_path",
    "transformers_version",
    "use_cache",
    "dtype",
    "torch_dtype",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "_attn_implementation_autoset",
}


def engine_for(
    model: torch.nn.Module, memory: float = 0.3, seed: int = 0, factory: Callable | None = None
) -> VLLMEngine:
    """The process's engine for models shaped like ``model`` (one per config and dtype: agents, roles and clones of
    one base share it, loading their own weights in turn)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    shape = {k: v for k, v in base.config.to_dict().items() if k not in VOLATILE}
    key = (type(base).__name__, json.dumps(shape, sort_keys=True, default=str), next(model.parameters()).dtype, factory)
    if key not in _ENGINES:
        _ENGINES[key] = VLLMEngine(model, memory, seed, factory)
    return _ENGINES[key]
