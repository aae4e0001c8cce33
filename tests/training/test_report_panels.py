"""progress.png: every panel has a title and axis labels; without a rating or exact figures the second panel is the
training (self-play) reward, not an empty one."""

from selfplay.training import report


def _axes(monkeypatch, history, training):
    seen = []
    monkeypatch.setattr(report, "png_bytes", lambda fig: seen.append(fig) or b"png")
    report._progress_plot(history, training)
    return seen[0].axes


def entry(step, mean):
    return {
        "step": step,
        "win_lose": False,
        "evaluation": {"mirror": {"mean_reward": mean, "mean_reward_ci": [mean - 0.1, mean + 0.1]}},
    }


def test_without_ratings_the_panels_are_evaluation_and_training_reward(monkeypatch):
    axes = _axes(
        monkeypatch,
        [entry(0, 0.2), entry(10, 0.4)],
        [{"step": s, "reward": {"first": 0.1 * s, "second": 0.1 * s}} for s in range(1, 11)],
    )
    assert [a.get_title() for a in axes] == ["evaluation", "training games"]
    assert all(a.get_xlabel() == "training step" and a.get_ylabel() for a in axes)
    assert {t.get_text() for t in axes[1].get_legend().get_texts()} == {"first", "second"}


def test_exact_figures_get_their_own_panel(monkeypatch):
    history = [{**entry(s, 0.0), "exact": {"exploitability": 0.3 - 0.01 * s, "players": 2}} for s in (0, 10)]
    axes = _axes(monkeypatch, history, [])
    assert [a.get_title() for a in axes] == ["evaluation", "distance to equilibrium (exact)"]
