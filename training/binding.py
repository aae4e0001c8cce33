"""The recipe keys that depend on the game, checked and completed once the game is known: curriculum arms, learner
roles and seats, the quiz, the evaluation baselines. ``training.config`` checks what needs no game."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from selfplay.training.names import arm_options
from selfplay.training.schema import TrainConfig

SELF_NAMES = ("self", "self-play", "selfplay")  # evaluation.opponents: other names of mirror


SPECIAL_AGENTS = {
    "evaluation.opponents": ("mirror",),
    "curriculum.arms": ("mirror", "pool", "average"),
    "opponents.scripted_opponent": ("average",),
}


def quiz_options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """A quiz set's game options: each problem answered once (``samples=1`` where the game takes samples)."""
    return {**options, "samples": 1} if "samples" in {f.name for f in fields(cls)} else dict(options)


def _bind_quiz(config: TrainConfig) -> None:
    """``evaluation.quiz_*``: a registered one-role game, sets whose options make it, a learner role to answer."""
    from selfplay.games.registry import game_class

    ev = config.evaluation
    if not ev.quiz_game:
        if ev.quiz_sets:
            raise ValueError(
                "config key 'evaluation.quiz_sets' is set but 'evaluation.quiz_game' is not: name the "
                "game its options are for (e.g. arithmetic)"
            )
        return
    if not ev.quiz_sets:
        raise ValueError(
            f"config key 'evaluation.quiz_game' = {ev.quiz_game!r} needs evaluation.quiz_sets: name -> "
            "options, e.g. {add2: {skill: add, digits: 2}}"
        )
    try:
        cls = game_class(ev.quiz_game)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"config key 'evaluation.quiz_game': {exc}") from None
    if len(cls.roles) != 1:
        raise ValueError(
            f"config key 'evaluation.quiz_game' = {ev.quiz_game!r} has roles {list(cls.roles)}; a quiz "
            "is a one-role game the learner answers alone"
        )
    for name, options in ev.quiz_sets.items():
        if not isinstance(options, dict):
            raise ValueError(f"config key 'evaluation.quiz_sets.{name}' = {options!r}: expected the game's options")
        try:
            cls(**quiz_options(cls, options))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config key 'evaluation.quiz_sets.{name}': {exc}") from None
    if not ev.quiz_role:  # the learner role of the quiz's name (creator_solver's solver), or the only one
        named = [r for r in config.learner_roles if r == cls.roles[0]]
        if not named and len(config.learner_roles) > 1:
            raise ValueError(
                f"config key 'evaluation.quiz_role': the quiz's role {cls.roles[0]!r} is not a learner "
                f"role; name which of {', '.join(config.learner_roles)} answers it"
            )
        ev.quiz_role = (named or config.learner_roles)[0]
    if ev.quiz_role not in config.learner_roles:
        raise ValueError(
            f"config key 'evaluation.quiz_role' = {ev.quiz_role!r}: expected a learner role "
            f"({', '.join(config.learner_roles)})"
        )


def bind_game(config: TrainConfig) -> type:
    """Check the keys that depend on the game and fill the defaults it decides: ``evaluation.opponents`` (random,
    plus expert when the game has one) and ``learner_roles`` (every role not held by ``opponents.seats``).
    ValueError names a role the game lacks or a baseline it cannot supply. Returns the game class; idempotent."""
    from selfplay.games.core import Game, with_options
    from selfplay.games.registry import game_class

    cls = with_options(game_class(config.game), config.game_options)
    _bind_arms(config, cls)
    _bind_roles(config, cls)
    _bind_quiz(config)
    if config.sampling.observer == "compact" and cls.compact_observation is Game.compact_observation:
        from selfplay.agents.sampling import warn_no_compact

        warn_no_compact(cls, "learner (sampling.observer)")  # once, before any model loads
    _bind_agents(config, cls)
    return cls


def _bind_arms(config: TrainConfig, cls: type) -> None:
    """Curriculum arms over a game option, typed as the game's fields type them; every arm keeps the roles."""
    from selfplay.games.core import with_options

    cur, roles = config.curriculum, list(cls.roles)
    for i, value in enumerate(cur.arms if cur.option and cur.option != "opponent" else []):
        arm = {**config.game_options, **arm_options(cur.option, value)}
        arm_roles = list(with_options(cls, arm).roles)
        typed = [arm[k] for k in cur.option.split(",")]  # as typed by the game's fields (1/3 for a float: the number)
        cur.arms[i] = typed if len(typed) > 1 else typed[0]
        if arm_roles != roles:
            raise ValueError(
                f"config key 'curriculum.arms': {cur.option}={value} gives {cls.name} the roles "
                f"{arm_roles}, not {roles}: the arms of one run must keep the same roles"
            )


def _bind_roles(config: TrainConfig, cls: type) -> None:
    """Seats and learner roles name the game's roles; the learner roles default to every role not seated."""
    roles, seats = list(cls.roles), config.opponents.seats
    for key, named in (("opponents.seats", list(seats)), ("learner_roles", config.learner_roles or [])):
        unknown = [r for r in named if r not in roles]
        if unknown:
            raise ValueError(f"config key {key!r}: {unknown} not role(s) of {cls.name}; roles: {', '.join(roles)}")
    if config.learner_roles is None:
        config.learner_roles = [r for r in roles if r not in seats]
    both = [r for r in config.learner_roles if r in seats]
    if both or not config.learner_roles:
        raise ValueError(
            f"config key 'learner_roles': {config.learner_roles} must name at least one role and none "
            f"held by opponents.seats ({both or list(seats)})"
        )


def _bind_agents(config: TrainConfig, cls: type) -> None:
    """The evaluation baselines (default: mirror for a cooperative team, random, expert where the game has them),
    and every agent spec a key names, checked against what the game can supply."""
    from selfplay.agents.spec_syntax import parse_spec
    from selfplay.games.core import Game, outcome_of, plays_random

    has_expert, has_random = cls.expert_action is not Game.expert_action, plays_random(cls(**config.game_options))
    ev, opp = config.evaluation, config.opponents
    if ev.opponents is not None:  # self and self-play read naturally for the learner with itself
        ev.opponents = ["mirror" if str(o) in SELF_NAMES else o for o in ev.opponents]
    if ev.opponents is None:  # a cooperative team is measured with itself first
        ev.opponents = [
            *(["mirror"] if outcome_of(cls).kind == "cooperative" else []),
            *(["random"] if has_random else []),
            *(["expert"] if has_expert else []),
        ]
    named = {
        "evaluation.opponents": ev.opponents,
        "opponents.seats": list(opp.seats.values()),
        "opponents.scripted_opponent": [opp.scripted_opponent] if opp.scripted_prob else [],
        "curriculum.arms": [str(v) for v in config.curriculum.arms] if config.curriculum.option == "opponent" else [],
    }
    for key, specs in named.items():
        for spec in specs:
            try:
                kind = None if spec in SPECIAL_AGENTS.get(key, ()) else parse_spec(str(spec)).kind
            except ValueError as exc:  # eval_opponents: 5 names the key, not only the spec
                raise ValueError(f"config key {key!r}: {exc}") from None
            if kind == "expert" and not has_expert:
                raise ValueError(
                    f"config key {key!r} names 'expert', but game {cls.name!r} ships no expert agent "
                    f"(it defines no expert_action): use random, or give the game an expert"
                )
            if kind == "random" and not has_random:
                raise ValueError(
                    f"config key {key!r} names 'random', but game {cls.name!r} lists no legal actions "
                    f"(free text) and defines no random_action: give the game a random_action, or use "
                    f"{'expert' if has_expert else 'another agent'}"
                )
