"""The names the trainer gives its agents and opponent kinds (no torch: the command validates with them)."""

from __future__ import annotations

LEARNER, POOL, SCRIPTED = "learner", "pool", "scripted"  # the trained weights, a frozen snapshot, a scripted agent
MIRROR = "mirror"  # an opponent arm: the learner against itself
AVERAGE = "average"  # a scripted opponent: the learner's exact average policy (fictitious self-play, small games)
OPPONENT = "opponent"  # the curriculum option whose arms are opponents: mirror, pool or a scripted agent spec


def arm_options(option: str, value: object) -> dict[str, object]:
    """The game options a curriculum arm sets: ``{option: value}``, or with several options named at once
    (``skill,digits``) one value each from the arm's list (``[add, 2]``)."""
    keys = option.split(",")
    if len(keys) == 1:
        return {option: value}
    if not isinstance(value, (list, tuple)) or len(value) != len(keys):
        raise ValueError(
            f"config key 'curriculum.arms': {value!r} does not give one value to each of the options "
            f"{option!r} (expected a list of {len(keys)}, like [{', '.join(keys)}])"
        )
    return dict(zip(keys, value))


def arm_name(value: object) -> str:
    """A curriculum arm's name in metrics, records and reports: its value, or ``add/2`` for a list of values."""
    return "/".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def agent_name(kind: str, group: str) -> str:
    """Agent name of a weight group's learner or pool copy ("learner" when shared, "learner/<role>" otherwise)."""
    return kind if group == "policy" else f"{kind}/{group}"


def scripted_name(spec: str) -> str:
    """Agent name of a scripted opponent that is a curriculum arm."""
    return f"{SCRIPTED}/{spec}"


def seat_name(role: str) -> str:
    """Agent name of the fixed agent that holds ``role`` (``opponents.seats``)."""
    return f"seat/{role}"
