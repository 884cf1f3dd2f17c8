"""The ``tempflex`` command line: one Typer app, one module per verb, thin over the library.

``cli.app`` builds the root app and registers the verb modules (``tokens``, ``ask``, ``train``, ``data``,
``probes``, ``budget``, ``synth``); ``cli.common`` holds what they share. The console script
``tempflex = "tempflex.cli:app"`` and ``python -m tempflex`` both run ``app``.
"""

from tempflex.cli.app import app

__all__ = ["app"]
