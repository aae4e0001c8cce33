from pathlib import Path

import pytest
import yaml

from training.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    assert f"configs/{path.name}" in path.read_text().splitlines()[1] + path.read_text().splitlines()[2]


@pytest.mark.parametrize("path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_launch_config_is_an_accelerate_config(path):
    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] in ("NO", "MULTI_GPU", "MULTI_CPU", "DEEPSPEED")
    assert data["num_processes"] >= 1
    if data["distributed_type"] == "DEEPSPEED":
        assert data["deepspeed_config"]["zero_stage"] in (2, 3)


@pytest.mark.parametrize("override, words", [
    ("learning_rate=0.1", "config key 'learning_rate'"),
    ("steps=many", "config key 'steps'"),
    ("weights=full", "'full' is not one of shared, lora, clone"),
    ("scripted_prob=1.5", "config key 'scripted_prob'"),
    ("steps", "is not key=value"),
    ("filter_refill=-1", "config key 'filter_refill': -1"),
    ("random_opening=-2", "config key 'random_opening': -2"),
])
def test_bad_keys_get_a_one_line_error_naming_them(override, words):
    with pytest.raises(ValueError) as info:
        load_config(CONFIGS / "quickstart.yaml", [override])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_overrides_win_over_the_file():
    config = load_config(CONFIGS / "tictactoe.yaml", ["lr=0.5", "game_options.compact=true"])
    assert config.lr == 0.5 and config.game_options == {"compact": True} and config.game == "tictactoe"
