from pathlib import Path

import pytest
import yaml

from selfplay.training.config import TrainConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path, tmp_path):
    from selfplay.train import check_config

    config = load_config(path, [f"run.out={tmp_path / 'run'}"])
    assert isinstance(config, TrainConfig)
    check_config(config)  # the game, its roles and seats, every agent spec, curriculum arms and parameters
    assert f"configs/{path.name}" in path.read_text().splitlines()[1] + path.read_text().splitlines()[2]


@pytest.mark.parametrize("path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_launch_config_is_an_accelerate_config(path):
    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] in ("NO", "MULTI_GPU", "MULTI_CPU", "DEEPSPEED")
    assert data["num_processes"] >= 1
    if data["distributed_type"] == "DEEPSPEED":
        assert data["deepspeed_config"]["zero_stage"] in (2, 3)


@pytest.mark.parametrize(
    "override, words",
    [
        ("learning_rate=0.1", "config key 'learning_rate'"),
        ("steps=many", "config key 'run.steps'"),
        ("weights=full", "'full' is not one of shared, lora, clone"),
        (
            "scripted_prob=1.5",
            "config key 'opponents.scripted_prob': 1.5 is out of range; expected a value in [0.0, 1.0]",
        ),
        ("opponents.pool_prob=-0.1", "config key 'opponents.pool_prob'"),
        ("steps", "is not key=value"),
        ("--steps", "override '--steps' is not key=value (write steps=VALUE)"),
        ("sampling=3", "config key 'sampling' is a section, not a value: set its keys (sampling.temperature=...)"),
        ("filter_refill=-1", "config key 'curriculum.filter_refill': -1"),
        ("random_opening=-2", "config key 'rollout.random_opening': -2"),
        ("update.lr=nan", "config key 'update.lr': nan"),
        ("update.lr=inf", "config key 'update.lr': inf is not a finite number"),
        ("run.max_minutes=inf", "config key 'run.max_minutes': inf is not a finite number"),
        ("curriculum.policy=sec", "'curriculum.policy': 'sec' needs curriculum.option and curriculum.arms"),
        ("curriculum.policy=bandit", "'bandit' is not one of none, uniform, sec, dump, adarft"),
        (
            "game_options={cards:20}",
            "'game_options': {cards:20} reads as the key 'cards:20' with no value: YAML needs a "
            "space after the colon, {cards: 20}",
        ),
        ("opponents.seats={judge:expert}", "{judge:expert} reads as the key 'judge:expert' with no value"),
    ],
)
def test_bad_keys_get_a_one_line_error_naming_them(override, words):
    with pytest.raises(ValueError) as info:
        load_config(CONFIGS / "tictactoe_quick.yaml", [override])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_list_keys_take_a_bare_value_or_commas_and_dashes_are_allowed():
    config = load_config(CONFIGS / "tictactoe_quick.yaml", ["evaluation.opponents=random", "--steps=3", "trackers="])
    assert config.evaluation.opponents == ["random"] and config.run.steps == 3 and config.run.trackers == []
    config = load_config(
        CONFIGS / "tictactoe_quick.yaml", ["evaluation.opponents=random,expert", "evaluation.opponents=null"]
    )
    assert config.evaluation.opponents is None
    assert load_config(
        CONFIGS / "tictactoe_quick.yaml", ["evaluation.opponents=random,expert"]
    ).evaluation.opponents == [
        "random",
        "expert",
    ]


def test_a_recipe_may_give_a_list_key_one_bare_value(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("game: kuhn_poker\nevaluation:\n  opponents: random\nlearner_roles: player_0\n")
    config = load_config(path)
    assert config.evaluation.opponents == ["random"] and config.learner_roles == ["player_0"]


def test_overrides_win_over_the_file():
    config = load_config(CONFIGS / "tictactoe.yaml", ["lr=0.5", "game_options.compact=true"])
    assert config.update.lr == 0.5 and config.game_options == {"compact": True} and config.game == "tictactoe"


def test_old_flat_keys_and_section_keys_are_the_same_setting(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text(
        "game: kuhn_poker\nlr: 0.25\neval_games: 12\ncurriculum: sec\ncurriculum_option: x\n"
        "curriculum_arms: [1, 2]\nsteps: 3\n"
    )
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "game: kuhn_poker\nupdate: {lr: 0.25}\nevaluation: {games: 12}\n"
        "curriculum: {policy: sec, option: x, arms: [1, 2]}\nrun: {steps: 3}\n"
    )
    with pytest.warns(FutureWarning, match="old name"):  # the old flat names still load, each with a warning
        from_flat = load_config(flat)
    assert (
        from_flat
        == load_config(nested)
        == load_config(
            None,
            [
                "game=kuhn_poker",
                "update.lr=0.25",
                "evaluation.games=12",
                "curriculum.policy=sec",
                "curriculum.option=x",
                "curriculum.arms=[1,2]",
                "run.steps=3",
            ],
        )
    )
    assert load_config(flat).curriculum.arms == [1, 2] and load_config(flat).evaluation.games == 12


def test_help_lists_every_section_key_with_its_help_and_choices():
    from dataclasses import fields

    from selfplay.training.config import SECTIONS, describe

    text = describe()
    for section in SECTIONS:
        for f in fields(getattr(TrainConfig(), section)):
            assert f"{section}.{f.name}" in text and f.metadata["help"] in text
    assert "(one of: rae, state, grpo)" in text and "[old name, deprecated: eval_games]" in text


def test_config_loads_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from selfplay.training.config import load_config; "
        f"load_config({str(CONFIGS / 'tictactoe_quick.yaml')!r}, ['lr=1e-3']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "text, words",
    [
        ("game: [tictactoe\n", "line 2, column 1: invalid YAML: did not find expected ',' or ']'"),
        ("game: a\ngame: b\n", "invalid YAML: found duplicate key game"),
        ("game:\n\tsteps: 3\n", "invalid YAML: found character that cannot start any token"),
        ("", "is empty: expected a mapping of keys"),
        ("- a\n- b\n", "expected a mapping of keys, got a list"),
        (b"\xff\xfe\x00", "not UTF-8 text (byte 0xff at offset 0)"),
        (
            "game: kuhn_poker\nopponents:\n  seats: [player_0]\n",
            "key 'opponents.seats' = ['player_0']: expected a mapping",
        ),
        ("game: kuhn_poker\ngame_options: 3\n", "key 'game_options' = 3: expected a mapping"),
        ("game: goofspiel\ngame_options: {cards:3}\n", "key 'game_options': {cards:3} reads as the key 'cards:3'"),
    ],
)
def test_bad_yaml_is_one_line_naming_file_and_place(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError) as err:
        load_config(path)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_run_paths_are_checked_before_any_model_loads(tmp_path):
    from selfplay.train import check_config

    with pytest.raises(ValueError, match="'run.resume': '/nope' is not a complete checkpoint"):
        check_config(load_config(None, ["run.resume=/nope", f"run.out={tmp_path}"]))
    with pytest.raises(ValueError, match="'run.out': cannot create '/dev/null/run'"):
        check_config(load_config(None, ["run.out=/dev/null/run"]))


def test_roles_set_by_a_game_option_reach_the_trainer_and_arms_may_not_change_them():
    from selfplay.training.binding import bind_game

    game = "tests/games/test_generality.py:SealedBids"
    config = load_config(None, [f"game={ROOT / game}", "game_options={players: 4}"])
    assert bind_game(config).roles == ("bidder_0", "bidder_1", "bidder_2", "bidder_3")
    assert config.learner_roles == ["bidder_0", "bidder_1", "bidder_2", "bidder_3"]
    arms = load_config(None, [f"game={ROOT / game}", "curriculum.option=players", "curriculum.arms=[2, 3]"])
    with pytest.raises(ValueError, match="arms of one run must keep the same roles"):
        bind_game(arms)


def test_a_mapping_override_replaces_the_files_mapping_and_a_dotted_one_changes_one_entry():
    judged = CONFIGS / "debate_judged_tiny.yaml"  # seats: {debater_a: expert, debater_b: expert}
    replaced = load_config(judged, ["opponents.seats={judge: expert}", "learner_roles=[debater_a, debater_b]"])
    assert replaced.opponents.seats == {"judge": "expert"}
    changed = load_config(judged, ["opponents.seats.debater_b=random"])
    assert changed.opponents.seats == {"debater_a": "expert", "debater_b": "random"}


def test_resuming_a_run_dir_of_another_game_or_model_is_refused_by_name(tmp_path):
    """run.out holds a TicTacToe run with a checkpoint: a Kuhn config there is refused before any model loads; the
    same game with another learning rate resumes."""
    import json
    from dataclasses import asdict

    from selfplay.arena import rundir
    from selfplay.train import check_config

    old = load_config(CONFIGS / "tictactoe_quick.yaml", [f"out={tmp_path}"])
    (tmp_path / "config.json").write_text(json.dumps(asdict(old)))
    checkpoint = rundir.checkpoint_dir(tmp_path, 1)
    checkpoint.mkdir(parents=True)
    (checkpoint / rundir.MARKER).write_text("ok\n")
    check_config(load_config(CONFIGS / "tictactoe_quick.yaml", [f"out={tmp_path}", "update.lr=0.5"]))
    with pytest.raises(ValueError, match=r"holds a run trained with game='tictactoe', .*game='kuhn_poker'"):
        check_config(load_config(CONFIGS / "kuhn_poker_tiny.yaml", [f"out={tmp_path}"]))
    with pytest.raises(ValueError, match=r"weights='shared'.* weights='lora'"):
        check_config(load_config(CONFIGS / "tictactoe_quick.yaml", [f"out={tmp_path}", "weights=lora"]))


def test_old_names_still_work_each_with_a_warning_naming_the_key_to_write():
    """The declared old names (eval_games, curriculum, curriculum_arms, ...) load with a FutureWarning that names the
    sectioned key; a field's own name without its section (lr) is the short form and loads silently."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(
            CONFIGS / "tictactoe_quick.yaml",
            ["eval_games=7", "lr=1e-3", "curriculum=uniform", "curriculum.option=opponent", "curriculum_arms=[mirror]"],
        )
    assert (config.evaluation.games, config.update.lr, config.curriculum.policy) == (7, 1e-3, "uniform")
    said = sorted(str(w.message) for w in caught if issubclass(w.category, FutureWarning))
    assert said == [
        "config key 'curriculum' is an old name and will be removed after 0.1: write 'curriculum.policy'",
        "config key 'curriculum_arms' is an old name and will be removed after 0.1: write 'curriculum.arms'",
        "config key 'eval_games' is an old name and will be removed after 0.1: write 'evaluation.games'",
    ]
