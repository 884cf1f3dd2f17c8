"""What answers a benchmark's questions: a ``Responder`` (decode a question's video; answer a batch of them).

``TempFlexResponder`` wraps a loaded ``Asker`` (the model stays loaded for the whole run). Three ways to answer:
``options`` scores the benchmark's answer labels (the letters, or yes/no) at the answer position in one forward
pass per batch, the way the probes are scored (``tempflex.probes.evaluate.score_questions``); ``text`` scores the
options' own first words instead (what the probe-trained default model can read; a question whose options cannot be
told apart by one token falls back to its letters); ``generate`` generates free text, read by the benchmark's rule.
Under a token budget every question goes through the budget pipeline on its own.

Shapes: B questions in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from tempflex.eval.base import Question

SCORING = ("options", "text", "generate")


@dataclass(frozen=True)
class Output:
    text: str  # the chosen label (option scoring) or the generated text
    visual_tokens: int


class Responder(Protocol):
    name: str  # the model, for the report

    def decode(self, question: Question) -> object: ...

    def respond(self, questions: Sequence[Question], media: Sequence[object]) -> list[Output]: ...


@dataclass
class ResponderSettings:
    frames: int  # frames sampled per video, uniformly over the question's window
    scoring: str = "options"  # options | text | generate (see the module docstring)
    budget: dict | None = None  # a BudgetSpec as a dict: tokens the video may cost the LLM
    max_new_tokens: int = 16  # generate only

    def __post_init__(self) -> None:
        if self.scoring not in SCORING:
            raise ValueError(f"scoring must be one of {', '.join(SCORING)}, got {self.scoring!r}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")


class TempFlexResponder:
    """A TempFlex model answering benchmark questions (see the module docstring)."""

    def __init__(self, asker, settings: ResponderSettings) -> None:
        self.asker, self.settings = asker, settings
        self.name = str(asker.model_dir)
        self._tokens: dict[tuple[str, ...], object] = {}

    def decode(self, question: Question):
        from tempflex.video import load_video

        return load_video(question.video, num_frames=self.settings.frames, start=question.start, end=question.end)

    @torch.inference_mode()
    def respond(self, questions: Sequence[Question], media: Sequence[object]) -> list[Output]:
        prompts = ["<video>\n" + q.render(m.timestamps) for q, m in zip(questions, media)]
        if self.settings.scoring == "generate":
            return [self._generate(q, p, m) for q, p, m in zip(questions, prompts, media)]
        labels = [self._labels(q) for q in questions]
        tokens = [self._answer_tokens(lab) for lab in labels]
        outputs: list[Output | None] = [None] * len(questions)
        runs: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tokens):  # one forward per shared lead (usually the whole batch)
            runs.setdefault(tuple(t.lead) if self.settings.budget is None else (i,), []).append(i)
        for members in runs.values():
            scores, visual = self._score([prompts[i] for i in members], [media[i] for i in members],
                                         [tokens[i] for i in members], [questions[i] for i in members])
            for i, s, v in zip(members, scores, visual):
                best = max(range(len(s)), key=s.__getitem__)
                outputs[i] = Output(questions[i].choices[best], int(v))
        return [o for o in outputs if o is not None]

    def _labels(self, question: Question) -> list[str]:
        usable = self.settings.scoring == "text" and len(question.options) == len(question.choices)
        if usable and self._answer_tokens(question.options, quiet=True) is not None:
            return question.options
        return question.choices

    def _answer_tokens(self, labels: Sequence[str], quiet: bool = False):
        from tempflex.answers import answer_tokens

        key = tuple(labels)
        if key not in self._tokens:
            try:
                self._tokens[key] = answer_tokens(self.asker.processor, list(labels))
            except ValueError:
                if not quiet:
                    raise
                self._tokens[key] = None
        return self._tokens[key]

    def _score(self, prompts, media, tokens, questions) -> tuple[list[list[float]], list[int]]:
        from tempflex.probes.evaluate import score_questions

        model, processor = self.asker.model, self.asker.processor
        if self.settings.budget is None:
            return score_questions(model, processor, prompts, list(media), tokens)
        from tempflex.answers import with_lead

        (prompt,), (video,), (tok,), (question,) = prompts, media, tokens, questions
        inputs, visual = self._budgeted(prompt, video, question)
        out = model(**with_lead(inputs, tok.lead, model), use_cache=False, logits_to_keep=1)
        return [out.logits[0, -1].float()[tok.ids].log_softmax(-1).tolist()], [visual]

    def _budgeted(self, prompt: str, video, question: Question) -> tuple[dict, int]:
        """Inputs under the token budget (one question) and the visual tokens they hold."""
        from tempflex.budget import BudgetPipeline

        inputs, info = BudgetPipeline.from_spec(self.settings.budget).prepare(
            self.asker.model, self.asker.processor, video, prompt, query=question.prompt)
        return inputs, int(info["visual_tokens"])

    def _generate(self, question: Question, prompt: str, video) -> Output:
        model, processor = self.asker.model, self.asker.processor
        if self.settings.budget is not None:
            inputs, visual = self._budgeted(prompt, video, question)
        else:
            text = processor.apply_chat_template([{"role": "user", "content": prompt}])
            inputs = processor(text, videos=[video])
            visual = int((inputs["input_ids"] == processor.video_token_id).sum())
        generated = model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False)
        new = generated[0, inputs["input_ids"].shape[1]:]
        return Output(processor.tokenizer.decode(new, skip_special_tokens=True).strip(), visual)
