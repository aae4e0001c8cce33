"""A LoRA or clone run's checkpoint plays outside the trainer (``hf:CHECKPOINT`` in play, tournaments and
serve), each role with the weights it trained: checked against the checkpoint's files merged by hand."""

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfplay.agents.base import Request
from selfplay.agents.checkpoints import RoleAgent
from selfplay.agents.llm import LLMAgent
from selfplay.agents.models import load_model, tiny_model
from selfplay.agents.precision import compute_dtype
from selfplay.agents.specs import build_agent
from selfplay.arena.participants import Participant, checkpoint_participants
from selfplay.games.core import system, user
from selfplay.games.tictactoe import TicTacToe
from selfplay.serve import resolve_model
from tests.training.test_train import TINY, run

ROLES = ("player_0", "player_1")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "run"
    run(
        [
            "weights=lora",
            "steps=1",
            "games_per_step=8",
            "evaluation.every=0",
            "checkpoint_every=1",
            "seed=3",
            "sampling.constrained=false",
        ],
        out,
        base=TINY,
    )
    return out


def merged_by_hand(checkpoint: Path, role: str, seed: int = 3) -> torch.nn.Module:
    """The tiny base of ``seed`` with ``role``'s adapter file merged in: W + (alpha / r) * B @ A."""
    model, _ = tiny_model(seed)
    folder = checkpoint / "policy" / role
    config = json.loads((folder / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    weights = load_file(folder / "adapter_model.safetensors")
    params = dict(model.named_parameters())
    merged = 0
    with torch.no_grad():
        for key, a in weights.items():
            if ".lora_A." not in key:
                continue
            b = weights[key.replace(".lora_A.", ".lora_B.")]
            name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
            params[name] += scale * b @ a
            merged += 1
    assert merged > 0
    return model.eval()


def teacher_forced(model: torch.nn.Module, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(completion)[:, None])[:, 0]


def requests(roles):
    game = TicTacToe()
    game.reset(0)
    messages = [system("TicTacToe. Answer with a cell."), user("board: ......... your move")]
    return [Request(game, role, messages) for role in roles]


def test_a_lora_checkpoint_plays_each_role_with_its_own_adapter(lora_run):
    checkpoint = lora_run / "checkpoints" / "step_000001"
    agent = build_agent(f"hf:{checkpoint}:temperature=1,max_new_tokens=6,seed=1", name="ckpt")
    assert isinstance(agent, RoleAgent) and set(agent.agents) == set(ROLES)
    by_hand = {role: merged_by_hand(checkpoint, role) for role in ROLES}
    with agent.session():  # as the arena calls it: shared prompt prefixes reused across calls, per role
        answers = agent.act(requests(["player_1", "player_0", "player_1"]))
        answers += agent.act(requests(["player_0", "player_1"]))
    for role, [completion] in zip(["player_1", "player_0", "player_1", "player_0", "player_1"], answers):
        other = ROLES[1 - ROLES.index(role)]
        mine = teacher_forced(by_hand[role], completion.prompt_ids, completion.completion_ids)
        theirs = teacher_forced(by_hand[other], completion.prompt_ids, completion.completion_ids)
        assert torch.allclose(torch.tensor(completion.logprobs), mine, atol=1e-4), role
        assert not torch.allclose(mine, theirs, atol=1e-3)  # the roles' adapters differ: routing is seen
    with pytest.raises(ValueError, match="no weights for role"):
        agent.act(requests(["judge"]))


def test_a_lora_checkpoint_refuses_another_base(lora_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(lora_run, copy)
    base = copy / "checkpoints" / "step_000001" / "base.json"
    base.write_text(json.dumps({**json.loads(base.read_text()), "seed": 4}))
    with pytest.raises(ValueError, match="frozen_sha256 differs"):
        build_agent(f"hf:{copy / 'checkpoints' / 'step_000001'}")


def test_lora_runs_enter_tournaments_and_serve_one_model_per_role(lora_run):
    [participant] = checkpoint_participants(lora_run, "temperature=0")
    sampling = json.loads((lora_run / "config.json").read_text())["sampling"]
    inherited = ",".join(
        f"{k}={str(sampling[k]).lower() if isinstance(sampling[k], bool) else sampling[k]}"
        for k in ("constrained", "observer", "max_new_tokens", "top_p")
    )
    # played as the run's evaluation sampled, a sampling option given here taking precedence
    assert participant.spec == f"hf:{lora_run / 'checkpoints' / 'step_000001' / 'policy'}:{inherited},temperature=0"
    assert resolve_model(str(lora_run)) == f"hf:{lora_run / 'checkpoints' / 'step_000001' / 'policy'}"

    from http.server import ThreadingHTTPServer

    from selfplay.chat_api import make_handler
    from selfplay.serve import Generator

    agent = build_agent(resolve_model(str(lora_run)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Generator(agent.agents)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        models = json.loads(urllib.request.urlopen(f"{url}/models", timeout=30).read())
        assert [m["id"] for m in models["data"]] == list(ROLES)

        def chat(model):
            body = json.dumps(
                {"model": model, "messages": [{"role": "user", "content": "move"}], "max_tokens": 3, "temperature": 0}
            ).encode()
            return json.loads(
                urllib.request.urlopen(urllib.request.Request(f"{url}/chat/completions", body), timeout=60).read()
            )

        assert chat("player_1")["model"] == "player_1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            chat("judge")
        assert refused.value.code == 400 and "player_0, player_1" in refused.value.read().decode()
    finally:
        server.shutdown()


def test_a_clone_checkpoint_plays_each_role_with_its_own_model(tmp_path):
    out = tmp_path / "run"
    run(
        [
            "weights=clone",
            "steps=1",
            "games_per_step=8",
            "evaluation.every=0",
            "checkpoint_every=1",
            "sampling.constrained=false",
        ],
        out,
        base=TINY,
    )
    checkpoint = out / "checkpoints" / "step_000001"
    agent = build_agent(f"hf:{checkpoint}:temperature=1,max_new_tokens=6")
    assert isinstance(agent, RoleAgent) and set(agent.agents) == set(ROLES)
    for role in ROLES:
        plain, _ = load_model("hf", str(checkpoint / "policy" / role))
        [[completion]] = agent.act(requests([role]))
        expected = teacher_forced(plain, completion.prompt_ids, completion.completion_ids)
        assert torch.allclose(torch.tensor(completion.logprobs), expected, atol=1e-4), role
    assert isinstance(agent.agents["player_0"], LLMAgent)
    assert agent.agents["player_0"].model is not agent.agents["player_1"].model


def test_a_four_player_game_from_an_option_trains_and_its_checkpoint_plays(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    game = Path(__file__).resolve().parents[1] / "games" / "test_generality.py"
    base = [o for o in TINY if not o.startswith("game_options")]
    run(
        [
            f"game={game}:SealedBids",
            "game_options={players: 4}",
            "weights=lora",
            "steps=1",
            "games_per_step=8",
            "evaluation.every=1",
            "evaluation.games=8",
            "evaluation.opponents=[random]",
            "checkpoint_every=1",
        ],
        out,
        base=base,
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["history"][-1]["evaluation"]["random"]["reward"]) == {f"bidder_{i}" for i in range(4)}
    from selfplay.arena.records import open_store

    recorded = list(open_store(out).episodes(with_steps=False))
    assert {"eval" in ep.meta for ep in recorded} == {True, False}  # training and evaluation games alike
    assert all(ep.options == {"players": 4} for ep in recorded)  # record the options they were played with
    played = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfplay.cli",
            "play",
            f"{game}:SealedBids",
            "--option",
            "players=4",
            "--agents",
            f"hf:{out / 'checkpoints' / 'step_000001'}:constrained=true",
            "random",
            "random",
            "random",
            "--games",
            "8",
            "--out",
            str(tmp_path / "play"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert played.returncode == 0, played.stderr[-2000:]
    assert "bidder_3" in played.stdout and "win" not in played.stdout  # amounts: mean rewards only
    assert {ep.options["players"] for ep in open_store(tmp_path / "play").episodes(with_steps=False)} == {4}


def test_a_role_checkpoint_is_refused_a_seat_it_has_no_weights_for(lora_run):
    from selfplay.agents.scripted import RandomAgent
    from selfplay.arena.matches import paired_matches
    from selfplay.arena.play import play

    agents = {"ckpt": build_agent(f"hf:{lora_run / 'checkpoints' / 'step_000001'}"), "r": RandomAgent(name="r")}
    agents["ckpt"].agents = {
        "player_0": agents["ckpt"].agents["player_0"]
    }  # as if trained with learner_roles=[player_0]
    with pytest.raises(ValueError, match="holds weights for the roles player_0, not for 'player_1'"):
        play(TicTacToe, paired_matches(TicTacToe.roles, ["ckpt", "r"], 2), agents, progress=False)


def test_a_lora_checkpoint_loads_in_another_dtype_after_its_base_is_checked(lora_run):
    checkpoint = lora_run / "checkpoints" / "step_000001"
    assert json.loads((checkpoint / "base.json").read_text())["dtype"] == "float32"
    agent = build_agent(f"hf:{checkpoint}:dtype=bfloat16,temperature=0,max_new_tokens=3")
    module = agent.agents["player_0"].model
    # on a CPU, bfloat16 is the products' precision over float32 weights (agents/precision.py)
    expected = torch.float32 if next(module.parameters()).device.type == "cpu" else torch.bfloat16
    assert {p.dtype for p in module.parameters()} == {expected}
    assert compute_dtype(module) == torch.bfloat16 or expected == torch.bfloat16
    [[answer]] = agent.act(requests(["player_1"]))
    assert len(answer.completion_ids) >= 1
    with pytest.raises(ValueError, match="size options .* do not apply to a checkpoint"):
        build_agent(f"hf:{checkpoint}:hidden_size=8")


def test_a_zero3_lora_run_on_two_processes_resumes_and_its_checkpoints_play(tmp_path):
    from tests.training.test_train import accelerate

    out = tmp_path / "run"
    for steps in (1, 2):  # the second launch resumes: the base's hash is taken over gathered weights, not shards
        result = run(
            [
                "weights=lora",
                f"steps={steps}",
                "games_per_step=8",
                "evaluation.every=0",
                "checkpoint_every=1",
                "sampling.constrained=false",
            ],
            out,
            launcher=accelerate("cpu_zero3.yaml"),
            base=TINY,
        )
    assert "resumed from" in result.stdout + result.stderr
    checkpoint = out / "checkpoints" / "step_000002"
    agent = build_agent(f"hf:{checkpoint}:temperature=1,max_new_tokens=6")
    by_hand = merged_by_hand(checkpoint, "player_1", seed=0)
    [[completion]] = agent.act(requests(["player_1"]))
    assert torch.allclose(
        torch.tensor(completion.logprobs),
        teacher_forced(by_hand, completion.prompt_ids, completion.completion_ids),
        atol=1e-4,
    )


def test_a_shared_checkpoint_is_a_base_model_and_a_role_checkpoint_is_refused_as_one(tmp_path, lora_run):
    from selfplay.train import check_config
    from selfplay.training.config import load_config

    out = tmp_path / "shared"
    run(["steps=1", "games_per_step=8", "evaluation.every=0", "checkpoint_every=1"], out, base=TINY)
    checkpoint = out / "checkpoints" / "step_000001"
    model, _ = load_model("hf", str(checkpoint))  # the checkpoint folder, not only its policy/
    saved = load_file(checkpoint / "policy" / "model.safetensors")
    assert all(torch.equal(p, saved[n]) for n, p in model.state_dict().items() if n in saved)
    lora = lora_run / "checkpoints" / "step_000001"
    with pytest.raises(ValueError, match="one adapter or model per role"):
        check_config(load_config(None, [f"model=hf:{lora}", f"run.out={tmp_path / 'from_lora'}"]))
    with pytest.raises(ValueError, match="one adapter or model per role"):
        load_model("hf", str(lora))


def test_a_checkpoint_played_by_path_samples_as_its_run_evaluated(lora_run, tmp_path):
    """hf:RUN/checkpoints/step_N plays as the run's evaluation sampled (constrained decoding, observer, ...), an
    option given in the spec taking precedence; a model folder outside a run keeps the defaults."""
    copy = tmp_path / "run"
    shutil.copytree(lora_run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["sampling"].update(constrained=True, observer="compact", max_new_tokens=5)
    config["evaluation"]["temperature"] = 0.0
    (copy / "config.json").write_text(json.dumps(config))
    ckpt = copy / "checkpoints" / "step_000001"
    for spec in (f"hf:{ckpt}", f"hf:{ckpt / 'policy'}"):
        some = next(iter(build_agent(spec).agents.values()))
        assert (
            some.sampling.constrained,
            some.sampling.observer,
            some.sampling.max_new_tokens,
            some.sampling.temperature,
        ) == (True, "compact", 5, 0.0)
    free = next(iter(build_agent(f"hf:{ckpt}:constrained=false,max_new_tokens=3").agents.values()))
    assert (free.sampling.constrained, free.sampling.max_new_tokens, free.sampling.observer) == (False, 3, "compact")
    (copy / "config.json").unlink()  # no run config: the defaults
    assert next(iter(build_agent(f"hf:{ckpt}").agents.values())).sampling.constrained is False


def test_a_lora_checkpoints_tournament_exploitability_is_the_one_its_run_measured(tmp_path):
    """The exact figure read off a LoRA checkpoint in a tournament (each role through its own adapter, sampling as
    the run evaluated) equals the trainer's own measurement at that step, to the last digit of a float."""
    from selfplay.arena.tournament import run_tournament

    out = tmp_path / "run"
    run(
        [
            "game=kuhn_poker",
            "weights=lora",
            "steps=1",
            "games_per_step=8",
            "evaluation.every=1",
            "evaluation.games=4",
            "checkpoint_every=1",
            "sampling.observer=compact",
        ],
        out,
        base=[o for o in TINY if not o.startswith("game")],
    )
    measured = json.loads((out / "summary.json").read_text())["history"][-1]["exact"]["exploitability"]
    participants = [Participant("random", "random"), *checkpoint_participants(out)]
    summary = run_tournament("kuhn_poker", participants, games=4, out=tmp_path / "tour", progress=False)
    figures = {r["agent"]: r["exploitability"] for r in summary["ratings"]}
    assert figures["step_1"] == pytest.approx(measured, rel=1e-9) and figures["random"] == pytest.approx(0.4583333333)


GUESS = '''
import itertools
from selfplay.games import Game, InvalidAction, Failure, Turn, Outcome


class Guess(Game):
    """Each holds a private number 1..3 and in turn guesses whether the total is above 4."""
    name = "guess_default"
    roles = ("default", "other")  # "default" is the name PEFT gives an unnamed adapter
    reward_range = (-1.0, 1.0)
    outcome = Outcome("general_sum", win_lose=False)
    max_turns = 2
    action_format = "[high] or [low]"

    def reset(self, seed):
        self.seed_rng(seed)
        self.reset_deal({r: self.rng.randint(1, 3) for r in self.roles})

    def deals(self):
        for combo in itertools.product(range(1, 4), repeat=2):
            yield 1 / 9, dict(zip(self.roles, combo))

    def reset_deal(self, deal):
        self.numbers, self.guesses = dict(deal), {}

    def turn(self):
        return next((Turn(r) for r in self.roles if r not in self.guesses), None)

    def observe(self, role):
        return [{"role": "system", "content": "Guess whether the two numbers sum to more than 4."},
                {"role": "user", "content": f"Your number is {self.numbers[role]}; said: {self.guesses}."}]

    def legal_actions(self, role):
        return ["[high]", "[low]"]

    def parse(self, role, text):
        for word in ("high", "low"):
            if f"[{word}]" in text:
                return word
        raise InvalidAction(Failure.PARSE_ERROR, "answer [high] or [low]")

    def step(self, role, actions):
        self.guesses[role] = actions[0] or "low"

    def rewards(self):
        high = sum(self.numbers.values()) > 4
        return {r: 1.0 if (g == "high") == high else -1.0 for r, g in self.guesses.items()}

    def resample_hidden(self, role, rng):
        for r in self.roles:
            if r != role:
                self.numbers[r] = rng.randint(1, 3)
'''


def test_a_lora_role_named_default_keeps_its_own_adapter_folder(tmp_path):
    """PEFT saves an adapter named "default" at the top of the folder, not in default/: the checkpoint moves it, so
    the role plays from it (it was "holds weights for the roles other, not for 'default'") with the run's figure."""
    from selfplay.arena.tournament import run_tournament

    game = tmp_path / "guess.py"
    game.write_text(GUESS)
    out = tmp_path / "run"
    run(
        [
            f"game={game}:Guess",
            "weights=lora",
            "steps=1",
            "games_per_step=8",
            "evaluation.every=1",
            "evaluation.games=4",
            "checkpoint_every=1",
            "evaluation.opponents=[random]",
        ],
        out,
        base=[o for o in TINY if not o.startswith("game")],
    )
    policy = out / "checkpoints" / "step_000001" / "policy"
    assert (policy / "default" / "adapter_config.json").exists() and not (policy / "adapter_config.json").exists()
    measured = json.loads((out / "summary.json").read_text())["history"][-1]["exact"]["exploitability"]
    participants = [Participant("random", "random"), *checkpoint_participants(out)]
    summary = run_tournament(f"{game}:Guess", participants, games=4, out=tmp_path / "tour", progress=False)
    figures = {r["agent"]: r["exploitability"] for r in summary["ratings"]}
    assert figures["step_1"] == pytest.approx(measured, rel=1e-9)
