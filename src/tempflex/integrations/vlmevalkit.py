"""``TempFlexVLM``: a TempFlex model as a VLMEvalKit model (``VIDEO_LLM = True``: it takes the video file itself).

VLMEvalKit is not on the package registry; where it is installed, the class derives from its
``vlmeval.vlm.base.BaseModel`` (``generate`` checks the message, then calls ``generate_inner``). To add it, put an
entry in ``supported_VLM`` (vlmeval/config.py)::

    from functools import partial
    from tempflex.integrations.vlmevalkit import TempFlexVLM
    supported_VLM["TempFlex-tiny"] = partial(TempFlexVLM, model_path=None, frames=16)

then ``python run.py --data Video-MME --model TempFlex-tiny``. A message is a list of ``{"type": "text" | "video" |
"image", "value": ...}``; the texts joined by newlines are the prompt. With a video (or several images, taken as its
frames in order): when the prompt lists options (A. / (A) lines), the option letters are scored in one forward pass
(``scoring="options"``), else the model generates; one image: a free answer about the image.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import ClassVar


def _base_model() -> type:
    try:
        return import_module("vlmeval.vlm.base").BaseModel
    except ImportError:
        return object


class TempFlexVLM(_base_model()):
    INTERLEAVE = False
    VIDEO_LLM = True
    allowed_types: ClassVar[list[str]] = ["text", "image", "video"]  # VLMEvalKit's generate() checks these

    def __init__(self, model_path: str | Path | None = None, frames: int | None = None, budget: int | None = None,
                 reduce: str = "flux", scoring: str = "options", max_new_tokens: int = 16, **kwargs) -> None:
        from tempflex.ask import Asker
        from tempflex.eval.responder import ResponderSettings, TempFlexResponder

        if kwargs:
            raise ValueError(f"unknown TempFlexVLM arguments: {', '.join(sorted(kwargs))}")
        self.asker = Asker(model_path)
        spec = None
        if budget is not None:
            from tempflex.budget import BudgetSpec

            name, _, extra = reduce.partition(",")
            spec = BudgetSpec.parse(f"{name}:{int(budget)}" + (f",{extra}" if extra else "")).model_dump()
        self.settings = ResponderSettings(frames=int(frames or self.asker.default_frames), scoring=scoring,
                                          budget=spec, max_new_tokens=int(max_new_tokens))
        self.responder = TempFlexResponder(self.asker, self.settings)
        self._generator = TempFlexResponder(self.asker, ResponderSettings(
            frames=self.settings.frames, scoring="generate", budget=spec, max_new_tokens=self.settings.max_new_tokens))

    def generate_inner(self, message: list[dict], dataset: str | None = None) -> str:
        from tempflex.eval.base import Question, option_letters

        prompt = "\n".join(str(m["value"]) for m in message if m["type"] == "text").strip()
        videos = [m["value"] for m in message if m["type"] == "video"]
        images = [m["value"] for m in message if m["type"] == "image"]
        if not prompt:
            raise ValueError("the message has no text")
        if len(videos) > 1 or (videos and images):
            raise ValueError("give one video, or images (one, or several taken as a video's frames), not both")
        if not videos and len(images) == 1:
            from tempflex.ask import load_media

            return self.asker.ask(prompt, load_media(image=images[0]), max_new_tokens=self.settings.max_new_tokens).text
        if not videos and not images:
            raise ValueError("the message has no video or image")
        choices = option_letters(prompt)
        question = Question(id=str(dataset or ""), video=videos[0] if videos else images[0], prompt=prompt,
                            answer="", choices=choices or [])
        media = self.responder.decode(question) if videos else _frames(images)
        responder = self.responder if choices and self.settings.scoring != "generate" else self._generator
        return responder.respond([question], [media])[0].text


def _frames(paths: list[str]):
    """Several images (a video's frames as VLMEvalKit dumps them) as one clip; they must share one size."""
    import numpy as np
    import torch

    from tempflex.image import load_image
    from tempflex.media import VideoClip

    frames = [np.asarray(load_image(p)) for p in paths]
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"the {len(frames)} frames differ in size: {sorted({f.shape[:2] for f in frames})}")
    return VideoClip(torch.from_numpy(np.stack(frames)), [float(i) for i in range(len(frames))])  # (T, H, W, 3)
