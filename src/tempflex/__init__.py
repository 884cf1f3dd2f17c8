"""tempflex: token-efficient, temporally aware video-language models (TempFlex-VL and token-budget methods).

Importing the package registers TempFlex with transformers' Auto classes (``AutoConfig``, ``AutoModel``,
``AutoModelForImageTextToText``, ``AutoProcessor``), as any transformers model package does; nothing else runs.
"""

from tempflex.configuration import TempFlexConfig
from tempflex.modeling import PlaceholderMismatchError, TempFlexForConditionalGeneration
from tempflex.processing import TempFlexProcessor

__version__ = "0.1.0"
__all__ = ["PlaceholderMismatchError", "TempFlexConfig", "TempFlexForConditionalGeneration", "TempFlexProcessor"]


def _register_auto_classes() -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    AutoConfig.register(TempFlexConfig.model_type, TempFlexConfig, exist_ok=True)
    AutoModel.register(TempFlexConfig, TempFlexForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(TempFlexConfig, TempFlexForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(TempFlexConfig, TempFlexProcessor, exist_ok=True)


_register_auto_classes()
