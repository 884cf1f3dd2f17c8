"""The model work of a job: inputs (plain or through the token-budget pipeline), option scoring in one forward
pass for a whole batch, and free generation.

Shapes: B jobs in a batch, L prompt length (left padded), V vocabulary.
"""

from __future__ import annotations

import time

import torch

from tempflex.serve.generation import Halt, TextStream, seeded
from tempflex.serve.jobs import Job, Result


def model_inputs(asker, jobs: list[Job]) -> tuple[dict, dict | None, float]:
    """(inputs, budget info or None, seconds): one left-padded batch, or one budgeted video prompt."""
    start = time.perf_counter()
    if jobs[0].budget is not None:
        from tempflex.budget import BudgetPipeline

        video = jobs[0].media[0].data
        inputs, info = BudgetPipeline.from_spec(jobs[0].budget).prepare(asker.model, asker.processor, video,
                                                                        jobs[0].prompt, query=jobs[0].query)
        return inputs, info, time.perf_counter() - start
    images = [m.data for job in jobs for m in job.media if m.kind == "image"]
    videos = [m.data for job in jobs for m in job.media if m.kind == "video"]
    inputs = asker.processor([job.text for job in jobs], images=images or None, videos=videos or None)
    return dict(inputs), None, time.perf_counter() - start


def frame_plan(asker, job: Job, info: dict | None) -> list[dict]:
    """Per frame that reached the LLM: its media item, frame index, time (s) and visual tokens."""
    if info is not None:
        times = job.media[0].timestamps
        return [{"media": 0, "index": i, "time": times[i] if i < len(times) else None, "tokens": n}
                for i, n in zip(info["frames"], info["tokens_per_frame"])]
    plan = []
    for m, item in enumerate(job.media):
        if item.kind == "video":
            height, width = item.data.size
            tokens = asker.processor.frame_grid(height, width).tokens
            plan += [{"media": m, "index": i, "time": t, "tokens": tokens} for i, t in enumerate(item.timestamps)]
        else:
            tokens = asker.processor.image_grid(item.data.height, item.data.width).tokens
            plan.append({"media": m, "index": 0, "time": None, "tokens": tokens})
    return plan


def _visual(asker, ids: torch.Tensor) -> int:
    p = asker.processor
    return int(((ids == p.video_token_id) | (ids == p.image_token_id)).sum())


def score(asker, jobs: list[Job]) -> list[Result]:
    """Score every job's options in one forward pass; each picks its best option (or samples one)."""
    from tempflex.answers import with_lead
    from tempflex.ask import timed

    model = asker.model
    with timed(model) as timer:
        inputs, info, process = model_inputs(asker, jobs)
        if info is not None:
            timer.next_phase()  # the LLM calls so far scored relevance for the budget
        visual = [_visual(asker, inputs["input_ids"][row]) for row in range(len(jobs))]
        inputs = with_lead(inputs, list(jobs[0].answers.lead), model)
        mask = inputs["attention_mask"]  # (B, L)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens only
        out = model(**inputs, position_ids=position_ids, use_cache=False, logits_to_keep=1)
    logits = out.logits[:, -1].float()  # (B, V)
    vocab = torch.log_softmax(logits, dim=-1)  # (B, V)
    timings = {"process": process, **{k: float(v) for k, v in timer.seconds.items()}}
    results = []
    for row, job in enumerate(jobs):
        ids = list(job.answers.ids)
        over = torch.log_softmax(logits[row, ids], dim=-1)  # (options,)
        if job.sampling.temperature > 0:
            probs = torch.softmax(logits[row, ids] / job.sampling.temperature, dim=-1)
            pick = int(torch.multinomial(probs, 1, generator=seeded(job.sampling.seed)))
        else:
            pick = int(over.argmax())
        choice = job.options[pick]
        results.append(Result(
            text=choice, finish_reason="stop", prompt_tokens=int(mask[row].sum()), completion_tokens=1,
            visual_tokens=visual[row], choice=choice,
            option_logprobs={o: float(v) for o, v in zip(job.options, over)},
            token_logprob=float(vocab[row, ids[pick]]), frames=frame_plan(asker, job, info),
            budget=_spent(info), timings=timings, batch_size=len(jobs),
        ))
    return results


def generate(asker, job: Job) -> Result | None:
    """Generate a free answer (None when the deadline ended it)."""
    from transformers import StoppingCriteriaList

    from tempflex.ask import timed

    model = asker.model
    with timed(model) as timer:
        inputs, info, process = model_inputs(asker, [job])
        if info is not None:
            timer.next_phase()
        # end-of-turn tokens; the role lines of a template-less tokenizer, which the stream cuts at itself
        ending = {"eos_token_id": asker.processor.end_of_turn_ids()}
        stops = job.sampling.stop + asker.processor.stop_strings()
        stream = TextStream(asker.processor.tokenizer, stops, job.emit)
        halt = Halt(stream, job.deadline, job.cancelled)
        if job.sampling.seed is not None:
            torch.manual_seed(job.sampling.seed)
        model.generate(**inputs, **job.sampling.generate_kwargs(), **ending, streamer=stream,
                       stopping_criteria=StoppingCriteriaList([halt]))
    if halt.timed_out:
        return None
    length = len(stream.ids) >= job.sampling.max_tokens and not stream.stopped
    return Result(
        text=stream.text, finish_reason="length" if length else "stop",
        prompt_tokens=int(inputs["attention_mask"].sum()), completion_tokens=len(stream.ids),
        visual_tokens=_visual(asker, inputs["input_ids"]), frames=frame_plan(asker, job, info),
        budget=_spent(info), timings={"process": process, **{k: float(v) for k, v in timer.seconds.items()}},
    )


def _spent(info: dict | None) -> dict | None:
    if info is None:
        return None
    return {k: info[k] for k in ("budget", "visual_tokens", "tag_tokens", "total", "tokens_per_frame")}
