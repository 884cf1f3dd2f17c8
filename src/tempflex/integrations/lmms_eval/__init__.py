"""lmms-eval's model ``tempflex``: ``python -m lmms_eval --model tempflex --model_args pretrained=DIR,frames=8``.

lmms-eval finds it through the entry point group ``lmms_eval.models`` (``manifest`` below, declared in
pyproject.toml); the classes themselves (``model.TempFlexChatLMMS``, ``model.TempFlexLMMS``) import lmms-eval, so
they are loaded only by lmms-eval. ``task.export_task`` writes a benchmark's questions as a local lmms-eval task.
"""

from __future__ import annotations

MODEL_ID = "tempflex"
SIMPLE_CLASS = "tempflex.integrations.lmms_eval.model.TempFlexLMMS"
CHAT_CLASS = "tempflex.integrations.lmms_eval.model.TempFlexChatLMMS"


def manifest():
    """The ``ModelManifest`` lmms-eval registers under ``tempflex``: the chat class (which lmms-eval picks by
    default) and the simple (doc_to_visual) class (picked with lmms-eval's force-simple option)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=SIMPLE_CLASS, chat_class_path=CHAT_CLASS)
