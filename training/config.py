"""Loading a training recipe: YAML with dotted ``key=value`` overrides, checked against ``training.schema``.

Each field declares its help text, and where it has them its choices and range; ``--help`` prints them and
``load_config`` checks them, so a bad value stops with one line naming the key before any model loads. Old flat keys
(``lr=1e-3``, ``eval_games=64``, ``curriculum=sec``) still work, in YAML and on the command line, as aliases of their
section field (``update.lr``, ``evaluation.games``, ``curriculum.policy``).

This module imports no torch: ``selfplay train --help`` and config errors are answered at once.
"""

from __future__ import annotations

import importlib.util
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from selfplay.agents.fields import check_fields
from selfplay.training.names import arm_name, arm_options
from selfplay.training.schema import (  # noqa: F401  (the schema's names, re-exported: one import for users)
    CURRICULA,
    SECTIONS,
    Curriculum,
    Evaluation,
    Opponents,
    Rollout,
    Run,
    Sampling,
    TrainConfig,
    Update,
    aliases,
    field_type,
    section_type,
)


def _shaped(data: dict, path: str) -> dict:
    """A recipe's values in the shape their keys declare: a bare value where a list is expected becomes a list of
    one; a list or value where a mapping is expected is a ValueError naming the key (OmegaConf's merge would not)."""
    out = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            out[key] = {name: _shape(f"{key}.{name}", v, path) for name, v in value.items()}
        else:
            out[key] = _shape(key, value, path)
    return out


def _glued_colon(key: str, value: Any, path: str | None = None) -> None:
    """ValueError for ``{cards:20}``: YAML reads it as the key 'cards:20' with no value, not cards = 20."""
    if isinstance(value, dict):
        glued = next((k for k, v in value.items() if isinstance(k, str) and ":" in k and v is None), None)
        if glued is not None:
            where = f"config file {path!r}: key" if path else "config key"
            raise ValueError(
                f"{where} {key!r}: {{{glued}}} reads as the key {glued!r} with no value: YAML needs a "
                f"space after the colon, {{{glued.replace(':', ': ', 1)}}}"
            )


def _shape(key: str, value: Any, path: str) -> Any:
    _glued_colon(key, value, path)
    kind = field_type(key) or ""
    if kind.startswith("list[") and value is not None and not isinstance(value, list):
        return [value]
    if kind.startswith("dict[") and value is not None and not isinstance(value, dict):
        raise ValueError(
            f"config file {path!r}: key {key!r} = {value!r}: expected a mapping, e.g. "
            f"{key.split('.')[-1]}: {{player_1: expert}}"
            if key.endswith("seats")
            else f"config file {path!r}: key {key!r} = {value!r}: expected a mapping (key: value)"
        )
    return value


def _is_list(key: str) -> bool:
    """Whether the dotted section key (``evaluation.opponents``) holds a list."""
    return (field_type(key) or "").startswith("list[")


def _move_flat_keys(data: dict) -> dict:
    """A YAML mapping with old flat keys moved into their sections (``curriculum: sec`` is the old key)."""
    table, out = aliases(), {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        elif key in table:
            section, name = table[key].split(".")
            out.setdefault(section, {})[name] = value
        else:
            out[key] = value
    return out


_TOP_LEVEL = tuple(f.name for f in fields(TrainConfig) if f.name not in SECTIONS)
# the old flat names a field declares (eval_games, curriculum_arms, ...), as opposed to a field's own name used
# without its section (lr for update.lr), which stays a short form
DEPRECATED = {
    f.metadata["alias"]: f"{section}.{f.name}"
    for section in SECTIONS
    for f in fields(section_type(section))
    if f.metadata.get("alias")
}


def _warn_deprecated(keys: list[str]) -> None:
    """One FutureWarning per old name used: it still works in 0.1, and names the key to write instead."""
    import warnings

    for key in dict.fromkeys(k.split(".")[0] for k in keys):
        if key in DEPRECATED and not (key in SECTIONS and key not in keys):
            warnings.warn(
                f"config key {key!r} is an old name and will be removed after 0.1: write {DEPRECATED[key]!r}",
                FutureWarning,
                stacklevel=3,
            )


def _override_key(key: str) -> str:
    """A dotted override key in its section form (``lr`` -> ``update.lr``; ``game_options.x`` unchanged)."""
    head = key.split(".")[0]
    if head in _TOP_LEVEL or (head in SECTIONS and "." in key):
        return key
    table = aliases()
    if head in table:
        return table[head] + key[len(head) :]
    return key


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a recipe YAML and dotted ``key=value`` overrides into a validated ``TrainConfig``."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    schema = OmegaConf.structured(TrainConfig)
    try:
        layers = [schema]
        if path is not None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"config file {str(path)!r} does not exist")
            data = _read_yaml(path)
            if data is None or data == {}:
                raise ValueError(
                    f"config file {str(path)!r} is empty: expected a mapping of keys, e.g. 'game: tictactoe'"
                )
            if not isinstance(data, dict):
                raise ValueError(f"config file {str(path)!r}: expected a mapping of keys, got a {type(data).__name__}")
            layers.append(OmegaConf.create(_shaped(_move_flat_keys(data), str(path))))
        dotted = []
        for item in overrides or []:
            key, eq, value = item.removeprefix("--").partition("=")  # --steps=3 is steps=3
            if not eq or not key:
                hint = f" (write {key.lstrip('-')}=VALUE)" if item.startswith("-") and key.lstrip("-") else ""
                raise ValueError(f"override {item!r} is not key=value{hint}")
            if _override_key(key) in SECTIONS and not value.strip().startswith("{"):
                example = fields(section_type(key))[0].name
                raise ValueError(
                    f"config key {key!r} is a section, not a value: set its keys ({key}.{example}=...) "
                    f"or give a mapping ({key}={{{example}: ...}})"
                )
            if _is_list(_override_key(key)) and not value.strip().startswith("[") and value.strip() != "null":
                value = f"[{value}]"  # eval_opponents=random is a list of one; a,b is a list of two
            if value.strip().startswith("{"):
                import yaml

                try:
                    _glued_colon(key, yaml.safe_load(value))
                except yaml.YAMLError:
                    pass  # OmegaConf names the syntax error below
            dotted.append(f"{_override_key(key)}={value}")
            if value.strip().startswith("{") and len(layers) > 1:  # key={...} replaces the file's mapping, not merges
                *parents, last = _override_key(key).split(".")
                node = layers[1]
                for part in parents:
                    node = node.get(part) if node is not None and part in node else None
                if node is not None and last in node:
                    del node[last]
        layers.append(OmegaConf.from_dotlist(dotted))
        config: TrainConfig = OmegaConf.to_object(OmegaConf.merge(*layers))
    except OmegaConfBaseException as exc:
        raise ValueError(_one_line(exc)) from None
    flat = [k for k, v in (data.items() if path is not None else ()) if not (k in SECTIONS and isinstance(v, dict))]
    _warn_deprecated(flat + [item.removeprefix("--").partition("=")[0] for item in overrides or []])
    validate(config)
    return config


def _read_yaml(path: str | Path) -> Any:
    """The YAML file's data; a syntax error (unclosed bracket, duplicate key, tab indentation) as one line naming the
    file, line and column."""
    import yaml
    from omegaconf import OmegaConf

    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
        plain = yaml.safe_load(Path(path).read_text())  # OmegaConf reads a bare scalar as a key
        if plain is not None and not isinstance(plain, dict):
            raise ValueError(
                f"config file {str(path)!r}: expected a mapping of keys, got a {type(plain).__name__} "
                f"{str(plain)[:40]!r} (a config looks like 'game: tictactoe')"
            )
        return data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"config file {str(path)!r}{where}: invalid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"config file {str(path)!r}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): expected a YAML file"
        ) from None


def _one_line(exc: Exception) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    first = str(exc).splitlines()[0]
    return f"config key {key!r}: {first}" if key else first


TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}  # -> module


def validate(config: TrainConfig) -> None:
    """Every declared choice and range, then the rules that tie keys together."""
    check_fields(config, "")
    cur, opp = config.curriculum, config.opponents
    if cur.policy != "none" and (not cur.option or not cur.arms):
        raise ValueError(f"config key 'curriculum.policy': {cur.policy!r} needs curriculum.option and curriculum.arms")
    for arm in cur.arms if "," in cur.option else []:
        arm_options(cur.option, arm)  # each arm gives every named option one value
    if cur.policy != "none":
        from selfplay.training.curriculum import make_curriculum

        try:  # its parameters against the policy's signature and checks
            make_curriculum(cur.policy, [arm_name(a) for a in cur.arms], **cur.params)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"config key 'curriculum.params' {dict(cur.params)} for policy {cur.policy!r}: {exc}"
            ) from None
    if cur.filter_low > cur.filter_high:
        raise ValueError(
            f"config keys 'curriculum.filter_low'/'filter_high': need low <= high, got "
            f"{cur.filter_low}, {cur.filter_high}"
        )
    for tracker in config.run.trackers:
        if tracker not in TRACKERS:
            raise ValueError(
                f"config key 'run.trackers': {tracker!r} is not a tracker; expected some of {', '.join(TRACKERS)}"
            )
        if importlib.util.find_spec(TRACKERS[tracker]) is None:
            raise ValueError(
                f"config key 'run.trackers' names {tracker!r}, which is not installed: pip install {TRACKERS[tracker]}"
            )
    if opp.pool_prob + opp.scripted_prob > 1:
        raise ValueError(
            f"config keys 'opponents.pool_prob' + 'opponents.scripted_prob' = "
            f"{opp.pool_prob + opp.scripted_prob} exceed 1"
        )
    if config.sampling.backend == "vllm":
        if config.sampling.constrained:
            raise ValueError(
                "config keys 'sampling.backend' = vllm and 'sampling.constrained' = true: constrained "
                "decoding is native-only; set one of them back"
            )
        from selfplay.agents.vllm_backend import unavailable

        if unavailable():
            raise ValueError(f"config key 'sampling.backend' = vllm: {unavailable()}; or use backend native")


# names that are not agent specs, by the config key that takes them: the learner itself, its snapshot pool, its average


def describe() -> str:
    """Every key by section with its default, choices and help (for ``selfplay train --help``)."""
    lines = []

    def rows(obj_type: type, prefix: str) -> None:
        for f in fields(obj_type):
            if obj_type is TrainConfig and f.name in SECTIONS:
                continue
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            meta = f.metadata
            extra = f" (one of: {', '.join(map(str, meta['choices']))})" if meta.get("choices") else ""
            alias = f" [old name, deprecated: {meta['alias']}]" if meta.get("alias") else ""
            lines.append(f"  {prefix + f.name:<32} {default!s:<14} {meta.get('help', '')}{extra}{alias}")

    rows(TrainConfig, "")
    for section in SECTIONS:
        cls = section_type(section)
        lines.append(f"\n{section}: {cls.__doc__}")
        rows(cls, f"{section}.")
    return "\n".join(lines)
