"""Save a randomly initialised model with a real architecture (for speed runs where weights do not matter).

    python benchmarks/random_model.py smollm2-random /tmp/smol-random
    selfplay train configs/tictactoe.yaml model=hf:/tmp/smol-random ...
Uses the SmolLM2 tokenizer from the selfplay cache (``$SELFPLAY_CACHE``); downloads nothing.
"""

import sys

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from benchmarks.generation import CONFIGS
from selfplay.agents.models import cache_dir

if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(max_position_embeddings=4096, **CONFIGS[name])).save_pretrained(out)
    AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m-instruct").save_pretrained(out)
    print(f"saved {name} with random weights to {out}")
