"""selfplay: multi-agent self-play for language models.

The layers install under this namespace: ``selfplay.games`` (rules), ``selfplay.agents`` (who acts),
``selfplay.arena`` (play, records, tournaments), ``selfplay.training`` (updates); ``selfplay.cli`` is the
``selfplay`` command and ``selfplay.train`` the training entry point (``accelerate launch -m selfplay.train``).
Nothing is imported here, so ``selfplay --help`` stays fast.
"""

__version__ = "0.1.0"
