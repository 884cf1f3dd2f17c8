"""``TempFlexLMMS``: a TempFlex model as lmms-eval's simple model ``tempflex`` (see the package docstring).

Model args: ``pretrained=DIR`` (default: tempflex-tiny), ``frames=N`` (default: the model's), ``budget=N`` with
``reduce=X`` (a token budget, as ``tempflex ask``), ``scoring=options|text|generate`` (default options).

- ``generate_until``: when the prompt lists options (lines "A. ...", "(A) ...") or the document carries
  ``tempflex_choices`` (tasks written by ``tempflex eval export-lmms``), the options are scored in one forward pass
  and the best label is the answer (``scoring=options``); otherwise the model generates up to ``max_new_tokens``.
  The same responder as ``tempflex eval`` answers, so both give the same predictions on the same questions.
- ``loglikelihood``: the mean negative log-likelihood of the continuation's tokens after the prompt (lower is
  likelier, as lmms-eval's perplexity tasks expect), and whether greedy decoding would have produced it.
- ``generate_until_multi_round``: rounds driven by the task's ``doc_to_text`` until it signals the end.
"""

from __future__ import annotations

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from tempflex.eval.base import Question, option_letters
from tempflex.eval.responder import ResponderSettings, TempFlexResponder


def _choices(prompt: str, doc: dict) -> list[str] | None:
    return list(doc["tempflex_choices"]) if doc.get("tempflex_choices") else option_letters(prompt)


class TempFlexLMMS(lmms):
    is_simple = True

    def __init__(self, pretrained: str | None = None, frames: int | None = None, budget: int | None = None,
                 reduce: str = "flux", scoring: str = "options", max_new_tokens: int = 16, batch_size: int = 1,
                 **kwargs) -> None:
        super().__init__()
        from tempflex.ask import Asker

        unknown = sorted(set(kwargs) - {"device", "device_map"})
        if unknown:
            raise ValueError(f"unknown tempflex model args: {', '.join(unknown)}")
        self.asker = Asker(pretrained)
        spec = None
        if budget is not None:
            from tempflex.budget import BudgetSpec

            name, _, extra = str(reduce).partition(";")  # commas separate model args: reducer options use ';'
            spec = BudgetSpec.parse(f"{name}:{int(budget)}" + (f",{extra.replace(';', ',')}" if extra else "")).model_dump()
        self.settings = ResponderSettings(frames=int(frames) if frames else self.asker.default_frames,
                                          scoring=str(scoring), budget=spec, max_new_tokens=int(max_new_tokens))
        self.responder = TempFlexResponder(self.asker, self.settings)
        self.batch_size_per_gpu = int(batch_size)
        from loguru import logger

        logger.info(f"{type(self).__name__}: {self.asker.model_dir}, {self.settings.frames} frames, "
                    f"scoring {self.settings.scoring}, budget {spec}")

    def _doc(self, task: str, split: str, doc_id: int) -> dict:
        return self.task_dict[task][split][doc_id]

    def _question(self, prompt: str, visuals, choices: list[str] | None, doc: dict) -> Question:
        if not visuals:
            raise ValueError("the tempflex lmms-eval model answers about a video: the task gave no visual")
        return Question(id=str(doc.get("question_id", "")), video=visuals[0], prompt=prompt, answer="",
                        choices=choices or [], start=doc.get("start"), end=doc.get("end"))

    def generate_until(self, requests: list[Instance]) -> list[str]:
        from tqdm import tqdm

        answers = []
        for request in tqdm(requests, desc="tempflex", disable=self.rank != 0):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            answers.append(self._answer(context, doc_to_visual(doc), _choices(context, doc), doc, gen_kwargs))
        return answers

    def _answer(self, context: str, visuals, choices, doc: dict, gen_kwargs: dict | None) -> str:
        question = self._question(context, visuals, choices, doc)
        media = self.responder.decode(question)
        if choices and self.settings.scoring != "generate":
            return self.responder.respond([question], [media])[0].text
        limit = int((gen_kwargs or {}).get("max_new_tokens", self.settings.max_new_tokens))
        generator = TempFlexResponder(self.asker, ResponderSettings(
            frames=self.settings.frames, scoring="generate", budget=self.settings.budget, max_new_tokens=limit))
        return generator.respond([question], [media])[0].text

    @torch.inference_mode()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        results = []
        processor, model = self.asker.processor, self.asker.model
        for request in requests:
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            continuation = doc_to_target(doc) if callable(doc_to_target) else str(doc_to_target)
            media = self.responder.decode(self._question(context, doc_to_visual(doc), None, doc))
            prompt = processor.apply_chat_template([{"role": "user", "content": "<video>\n" + context}])
            inputs = processor(prompt + continuation, videos=[media])
            n_prompt = processor(prompt, videos=[media])["input_ids"].shape[1]
            logits = model(**inputs, use_cache=False).logits[0, n_prompt - 1 : -1].float()  # (C, V)
            target = inputs["input_ids"][0, n_prompt:]  # (C,)
            logprobs = logits.log_softmax(-1).gather(-1, target[:, None])[:, 0]
            results.append((float(-logprobs.mean()), bool((logits.argmax(-1) == target).all())))
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list:
        results = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            visuals, outputs, info, round_idx = doc_to_visual(doc), [], None, 0
            while True:
                if round_idx:
                    visuals, context, terminal, round_res, info = doc_to_text(
                        doc, previous_output=outputs, round_idx=round_idx, previous_round_info=info)
                    if terminal:
                        results.append(round_res if round_res is not None else outputs)
                        break
                outputs.append(self._answer(context, visuals or doc_to_visual(doc), None, doc, gen_kwargs))
                round_idx += 1
        return results


class TempFlexChatLMMS(TempFlexLMMS):
    """The chat form lmms-eval prefers: requests carry ``doc_to_messages`` (a user turn with the video and text)
    instead of ``doc_to_visual``; answering is the same."""

    is_simple = False

    def _from_messages(self, messages) -> tuple[str, list]:
        from lmms_eval.protocol import ChatMessages

        chat = ChatMessages(messages=messages)
        _, videos, _ = chat.extract_media()
        text = "\n".join(part.text for m in chat.messages if m.role == "user" for part in m.content
                         if part.type == "text")
        return text, videos

    def generate_until(self, requests: list[Instance]) -> list[str]:
        from tqdm import tqdm

        answers = []
        for request in tqdm(requests, desc="tempflex", disable=self.rank != 0):
            _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            text, videos = self._from_messages(doc_to_messages(doc))
            answers.append(self._answer(text, videos, _choices(text, doc), doc, gen_kwargs))
        return answers

    def generate_until_multi_round(self, requests: list[Instance]) -> list:
        results = []
        for request in requests:
            _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            text, videos = self._from_messages(doc_to_messages(doc))
            outputs, info, round_idx = [], None, 1
            while True:
                outputs.append(self._answer(text, videos, None, doc, gen_kwargs))
                messages, terminal, previous, info = doc_to_messages(
                    doc, round_idx=round_idx, previous_output=outputs, previous_round_info=info)
                if terminal:
                    results.append(previous if previous is not None else outputs)
                    break
                text, more = self._from_messages(messages)
                videos = more or videos
                round_idx += 1
        return results
