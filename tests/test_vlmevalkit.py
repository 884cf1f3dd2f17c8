"""``TempFlexVLM`` driven the way VLMEvalKit drives a model: its message format through a stand-in ``BaseModel``
(VLMEvalKit is not on the package registry) whose ``generate`` checks types as the real one does."""

from __future__ import annotations

import importlib
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from tempflex.ask import Asker
from tempflex.eval import Question, ResponderSettings, TempFlexResponder
from tempflex.probes.format import format_question


class StandInBaseModel:
    """What TempFlexVLM relies on from vlmeval.vlm.base.BaseModel: generate() checks then calls generate_inner()."""

    INTERLEAVE = False
    allowed_types: ClassVar[list[str]] = ["text", "image"]

    def generate(self, message, dataset=None):
        assert isinstance(message, list) and all({"type", "value"} <= set(m) for m in message)
        for item in message:
            assert item["type"] in self.allowed_types, f"Invalid input type: {item['type']}"
        return self.generate_inner(message, dataset)


@pytest.fixture(scope="module")
def vlm_class():
    names = ("vlmeval", "vlmeval.vlm", "vlmeval.vlm.base")
    saved = {n: sys.modules.get(n) for n in (*names, "tempflex.integrations.vlmevalkit")}
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules["vlmeval.vlm.base"].BaseModel = StandInBaseModel
    sys.modules.pop("tempflex.integrations.vlmevalkit", None)
    module = importlib.import_module("tempflex.integrations.vlmevalkit")
    yield module.TempFlexVLM
    for name, old in saved.items():
        if old is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = old


def test_video_message_with_options_scores_letters(vlm_class, saved_tiny, probes):
    vlm = vlm_class(model_path=saved_tiny, frames=4)
    assert issubclass(vlm_class, StandInBaseModel) and vlm.VIDEO_LLM
    video = str(next((probes / "videos" / "test").glob("*.mp4")))
    prompt = "Which way does it move?\nA. left\nB. right\nC. up\nAnswer with the option's letter."
    message = [{"type": "video", "value": video}, {"type": "text", "value": prompt}]
    answer = vlm.generate(message, dataset="Video-MME")
    assert answer in ("A", "B", "C")
    # the adapter hands tempflex eval's responder the prompt and video unchanged: the same answer
    responder = TempFlexResponder(Asker(saved_tiny), ResponderSettings(frames=4))
    question = Question("q", video, prompt, "", ["A", "B", "C"])
    assert responder.respond([question], [responder.decode(question)])[0].text == answer
    free = vlm.generate([{"type": "video", "value": video}, {"type": "text", "value": "Describe it."}])
    assert isinstance(free, str)


def test_frames_as_images_and_one_image(vlm_class, saved_tiny, probes, tmp_path):
    vlm = vlm_class(model_path=saved_tiny, frames=4, scoring="text")
    paths = []
    for i in range(3):
        path = tmp_path / f"frame{i}.png"
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(path)
        paths.append(str(path))
    prompt = format_question("Which colour?", ["red", "green"]).replace("Options: red, green.", "A. red\nB. green")
    answer = vlm.generate([*({"type": "image", "value": p} for p in paths), {"type": "text", "value": prompt}])
    assert answer in ("A", "B")
    one = vlm.generate([{"type": "image", "value": paths[0]}, {"type": "text", "value": "What is this?"}])
    assert isinstance(one, str)
    with pytest.raises(ValueError, match="no video or image"):
        vlm.generate([{"type": "text", "value": "hello"}])
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(small)
    with pytest.raises(ValueError, match="differ in size"):
        vlm.generate([{"type": "image", "value": paths[0]}, {"type": "image", "value": str(small)},
                      {"type": "text", "value": prompt}])
    with pytest.raises(AssertionError, match="Invalid input type"):
        vlm.generate([{"type": "audio", "value": "x.wav"}, {"type": "text", "value": prompt}])
