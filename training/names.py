"""The names the trainer gives its agents and opponent kinds (no torch: the command validates with them)."""

from __future__ import annotations

LEARNER, POOL, SCRIPTED = "learner", "pool", "scripted"  # the trained weights, a frozen snapshot, a scripted agent
MIRROR = "mirror"  # an opponent arm: the learner against itself
AVERAGE = "average"  # a scripted opponent: the learner's exact average policy (fictitious self-play, small games)
OPPONENT = "opponent"  # the curriculum option whose arms are opponents: mirror, pool or a scripted agent spec


def agent_name(kind: str, group: str) -> str:
    """Agent name of a weight group's learner or pool copy ("learner" when shared, "learner/<role>" otherwise)."""
    return kind if group == "policy" else f"{kind}/{group}"


def scripted_name(spec: str) -> str:
    """Agent name of a scripted opponent that is a curriculum arm."""
    return f"{SCRIPTED}/{spec}"


def seat_name(role: str) -> str:
    """Agent name of the fixed agent that holds ``role`` (``opponents.seats``)."""
    return f"seat/{role}"
