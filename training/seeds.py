"""Every seed the trainer derives, in one place, stably: the same numbers in every process, run and resume.

Seeds come from SHA-256 of the parts' text, never from ``hash()`` (which Python randomises per process for
strings). Fixed evaluation sets live in their own seed ranges, far from training games' seeds.
"""

from __future__ import annotations

import hashlib
import random

EVAL_GAMES = 10_000_000  # the evaluation set: game j of every evaluation uses seed EVAL_GAMES + j // seats
HELDOUT_GAMES = 20_000_000  # held-out seeds per curriculum arm
QUIZ_GAMES = 40_000_000  # the held-out quiz (evaluation.quiz_*): problem j of every set
EVAL_BASELINE = 10_000  # the scripted baselines' seed in evaluation (their draws are per game: agents/scripted.py)


def derive(*parts: object) -> int:
    """A 31-bit seed from any parts (ints, strings): stable across processes, platforms and Python versions."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**31


def rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from the parts."""
    return random.Random(derive(*parts))


def learner_sampling(seed: int, step: int, rank: int, index: int) -> int:
    """The sampling seed of learner agent ``index`` on ``rank`` at ``step``."""
    return derive(seed, "learner", step, rank, index)


def opponent(seed: int, step: int, rank: int, spec: str) -> int:
    """The seed of a scripted opponent (``spec``) on ``rank`` at ``step``."""
    return derive(seed, "opponent", step, rank, spec)


def pool_sampling(step: int) -> int:
    """The sampling seed of the pool snapshot's agents at ``step``."""
    return derive("pool-agent", step)
