"""A needle in an hour: one short event in a one-hour synthetic video, answered under a token budget of 8K.

Each trial writes a 64x64 px, 1 fps video of ``--minutes`` (default 60: 3600 frames), H.264 through the probes'
encoder: a static dark textured scene (the probes' ``textured_background`` at 55 % brightness, with +-``--noise``
levels of fresh pixel noise per frame so that no two frames are identical) and, at a random time, a red circle
that appears, crosses 0.6 of the frame left, right, up or down over ``--event-seconds`` (6 frames) and vanishes.
The question is the probes' "Which way does the red circle move?" with the four directions as options, scored as
in ``tempflex probes eval`` (the option whose first answer token has the highest logit). Methods, each at the same
budget B (``--budget``, default 8192 visual tokens; the model's processor writes no time tags, and frame separators
are not charged, as in the paper's counts):

- ``uniform``: the normal path, ``load_video(num_frames=n)`` with n = min(B // 4, T) uniformly sampled frames of 4
  tokens (2048 of 3600 at B = 8192), through the processor;
- ``ata``: every frame (1 fps) through the ``ata`` reducer (Tempo's adaptive allocation: segments of
  ``--segment-frames`` = 16 frames, relevance from the model's own yes/no answer per segment, water-filled into
  [8, 64] tokens a segment, the most changing tokens inside a segment);
- ``flux``: every frame through FluxViT's group-dynamic selection (4 groups);
- ``ata-tempo`` (Tempo's own allocator and head-of-segment rule on the same segments and relevance) and the other
  content-only reducers at the probes benchmark's specs (``budget_probes.METHODS``): ``drop``, ``drop-fill``,
  ``uniform-tokens``, ``kffocus``, ``scenetilling``, ``holitom``, ``tome``, ``date``, ``f2c``, ``bvllm``. The last
  three score every frame's relevance: 3600 LLM passes an hour, made once and shared by the three.

The reducers of a trial share one decode of every frame, one encoding and one relevance scoring per segmenting
(``ata`` with ``ata-tempo``, the per-frame three together; ``BudgetPipeline.prepare``'s memo); each method's seconds
still charge what it reused (``reused``), so a row's total is what the method costs alone.

Reported per trial and method: visual tokens, prompt length, tokens per frame averaged over the hour (visual / T)
and per frame that keeps tokens, how many of the event's frames keep tokens, the event's share of the tokens
against its share of the time (for ``ata`` also the event's segments and their relevance rank), the answer and
whether it is right, and seconds per stage (decode, vision, tff, merger, relevance, reduce+prompt, prefill; the
reducers share one decode of every frame, shown in both).

    nice -n 10 .venv/bin/python benchmarks/needle.py --trials 3            # 3 one-hour videos, B = 8192

Videos go to runs/needle/ (kept and reused); results are cached per (trial, method) in
runs/needle/results/<model>-<hash>/ and written to benchmarks/results/needle.json and .md (``--out``), the plot
(tokens per frame over the hour and around the event, first trial) to docs/img/needle.png (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from budget_probes import (  # the sibling benchmark (benchmarks/ is on sys.path)
    METHODS,
    cache_dir,
    option_scores,
    shown,
)

from tempflex.answers import answer_tokens
from tempflex.ask import timed
from tempflex.atomic import write_text_atomic
from tempflex.probes.format import format_question
from tempflex.probes.generate import write_mp4
from tempflex.probes.render import Track, draw_tracks, textured_background
from tempflex.probes.skills import DIRECTIONS
from tempflex.video import load_video

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Which way does the red circle move?"
SEGMENTED = {"ata": "ata:{budget},segment_frames={segment}",
             "ata-tempo": "ata:{budget},segment_frames={segment},allocator=tempo,within=head"}
PER_FRAME_RELEVANCE = ("date", "f2c", "bvllm")  # one relevance pass a frame (3600 an hour), shared by the three
SPECS = {**{m: t for m, t in METHODS.items() if t is not None}, **SEGMENTED}
DEFAULT_METHODS = ("uniform", "ata", "flux", "ata-tempo", "drop-fill", "drop", "uniform-tokens", "kffocus",
                   "scenetilling", "holitom", "tome", *PER_FRAME_RELEVANCE)  # uniform: no reducer
DIM = 0.55  # brightness of the textured scene: dark, so the saturated red circle stands out


@dataclass(frozen=True)
class Needle:
    """One trial's video and what happens in it (T frames at 1 fps; the event is frames [start, stop))."""

    path: str
    frames: int  # T
    size: int  # S: frames are S x S px
    start: int  # first frame showing the circle
    stop: int  # one past the last
    direction: str
    options: list[str]
    key: str  # the settings that made the video; a mismatch remakes it

    @property
    def answer(self) -> str:
        return self.direction  # the right option: its text, as the probes answer

    @property
    def prompt(self) -> str:
        return "<video>\n" + format_question(QUESTION, self.options)


def make_needle(out: Path, seed: int, trial: int, minutes: float, size: int, event: int, noise: int) -> Needle:
    """Draw and encode one trial (or reuse it when the same settings already wrote it)."""
    key = f"seed={seed},trial={trial},minutes={minutes},size={size},event={event},noise={noise}"
    path = out / f"needle-s{seed}-t{trial}-{minutes:g}m.mp4"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file() and json.loads(meta.read_text())["key"] == key:
        return Needle(**json.loads(meta.read_text()))
    rng = np.random.default_rng([seed, trial])
    frames = round(minutes * 60)
    margin = max(1, frames // 20)
    if frames < 2 * margin + event:
        raise ValueError(f"{minutes} minutes is too short for a {event} s event")
    scene = (textured_background(rng, size, size) * DIM).astype(np.int16)  # (S, S, 3)
    start = int(rng.integers(margin, frames - margin - event + 1))
    direction = DIRECTIONS[int(rng.integers(4))]
    radius = float(rng.uniform(size / 4, size / 3)) / 2
    lo, hi = radius + 1, size - 2 - radius  # centres that keep the circle inside the frame
    distance = min(0.6 * size, hi - lo)
    a0 = lo + float(rng.random()) * (hi - lo - distance)
    a0, a1 = (lo + hi - a0, lo + hi - a0 - distance) if direction in ("left", "up") else (a0, a0 + distance)
    b = float(rng.uniform(lo, hi))
    ends = ((a0, b), (a1, b)) if direction in ("left", "right") else ((b, a0), (b, a1))
    order = [int(i) for i in rng.permutation(4)]
    options = [DIRECTIONS[i] for i in order]
    clip = np.empty((frames, size, size, 3), dtype=np.uint8)  # (T, S, S, 3)
    for t in range(frames):
        grain = rng.integers(-noise, noise + 1, size=scene.shape, dtype=np.int16) if noise else 0
        clip[t] = np.clip(scene + grain, 0, 255)
    draw_tracks(clip[start : start + event], [Track.moving("circle", "red", *ends, 2 * radius, event)])
    out.mkdir(parents=True, exist_ok=True)
    write_mp4(path, clip, fps=1)
    needle = Needle(str(path), frames, size, start, start + event, direction, options, key)
    write_text_atomic(meta, json.dumps(asdict(needle), indent=2) + "\n")
    return needle


def per_source_frame(frames: int, indices: list[int], counts: list[int]) -> np.ndarray:
    """(T,) tokens kept on each frame of the hour, from the decoded frames' source indices and their counts."""
    out = np.zeros(frames, dtype=np.int64)
    out[np.asarray(indices, dtype=np.int64)] = counts
    return out


@torch.inference_mode()
def run_method(asker, needle: Needle, method: str, budget: int, segment: int, decoded: dict) -> dict:
    """One (trial, method): answer, tokens per frame of the hour, seconds per stage."""
    model, processor = asker.model, asker.processor
    answer = answer_tokens(processor, needle.options)
    per_frame = processor.frame_grid(needle.size, needle.size).tokens  # merged tokens of one frame
    segments = None
    with timed(model) as timer:
        if method == "uniform":
            start = time.perf_counter()
            clip = load_video(needle.path, num_frames=min(budget // per_frame, needle.frames))
            decode = time.perf_counter() - start
            text = processor.apply_chat_template([{"role": "user", "content": needle.prompt}])
            inputs = processor(text, videos=[clip])
            visual = int((inputs["input_ids"] == processor.video_token_id).sum())
            counts, info, prepare = [visual // clip.num_frames] * clip.num_frames, None, 0.0
        else:
            if "clip" not in decoded:  # every frame, decoded once for all the reducers of a trial
                start = time.perf_counter()
                decoded["clip"] = load_video(needle.path, num_frames=needle.frames)
                decoded["seconds"] = time.perf_counter() - start
            clip, decode = decoded["clip"], decoded["seconds"]
            if list(clip.indices) != list(range(needle.frames)):
                raise ValueError(f"{needle.path}: decoding every frame gave {clip.num_frames} of {needle.frames}")
            from tempflex.budget import BudgetPipeline

            pipeline = BudgetPipeline.from_spec(SPECS[method].format(budget=budget, segment=segment))
            start = time.perf_counter()
            inputs, info = pipeline.prepare(model, processor, clip, needle.prompt, query=QUESTION,
                                            memo=decoded.setdefault("memo", {}))  # encodings, relevance shared
            prepare = time.perf_counter() - start
            timer.next_phase()  # the LLM calls so far were relevance scoring
            visual, counts = int(info["visual_tokens"]), info["tokens_per_frame"]
            if info["relevance"] is not None:
                segments = pipeline.reducer.segments(clip.num_frames)  # clip frames are the hour's frames
        scores = option_scores(model, inputs, answer)
    if visual > budget:
        raise AssertionError(f"{method} spent {visual} visual tokens, budget {budget}")
    seconds = {"decode": decode, **{k: float(v) for k, v in timer.seconds.items()}}
    if info is not None:
        inside = sum(seconds.get(k, 0.0) for k in ("vision", "tff", "merger", "relevance"))
        seconds["reduce+prompt"] = prepare - inside
        if info["reused_seconds"]:  # encoding (and relevance) an earlier method of the trial computed: charged
            seconds["reused"] = info["reused_seconds"]
    tokens = per_source_frame(needle.frames, clip.indices, counts)
    predicted = needle.options[int(np.argmax(scores))]
    return {"method": method, "budget": budget, "spec": None if info is None else SPECS[method].format(
                budget=budget, segment=segment),
            "decoded_frames": clip.num_frames, "visual_tokens": visual,
            "prompt_tokens": int(inputs["input_ids"].shape[1]), "answer": needle.answer, "predicted": predicted,
            "correct": predicted == needle.answer, "scores": [round(s, 4) for s in scores],
            **event_stats(needle, tokens, info, segments), "seconds": seconds,
            "total_seconds": sum(seconds.values()), "tokens_per_frame": tokens.tolist()}


def event_stats(needle: Needle, tokens: np.ndarray, info: dict | None, segments: list[range] | None) -> dict:
    """Where the tokens went: on the event's frames, and for ata on the event's segments."""
    visual, frames = int(tokens.sum()), needle.frames
    event = tokens[needle.start : needle.stop]
    out = {"tokens_per_hour_frame": visual / frames, "frames_with_tokens": int((tokens > 0).sum()),
           "tokens_per_kept_frame": visual / max(1, int((tokens > 0).sum())),
           "event_frames": needle.stop - needle.start, "event_frames_with_tokens": int((event > 0).sum()),
           "event_tokens": int(event.sum()), "event_token_share": float(event.sum()) / max(1, visual),
           "event_time_share": (needle.stop - needle.start) / frames}
    if segments is not None:
        hit = [i for i, s in enumerate(segments) if s.start < needle.stop and needle.start < s.stop]
        relevance = np.asarray(info["relevance"])
        rank = (-relevance).argsort().argsort() + 1  # 1: the most relevant segment
        span = range(segments[hit[0]].start, segments[hit[-1]].stop)
        out.update({"event_segments": hit, "event_segment_rank": [int(rank[i]) for i in hit],
                    "segments": len(segments), "event_segment_tokens": int(tokens[span.start : span.stop].sum()),
                    "event_segment_token_share": float(tokens[span.start : span.stop].sum()) / max(1, visual),
                    "event_segment_time_share": len(span) / frames})
    return out


def markdown(needles: list[Needle], results: list[list[dict]], command: str, meta: dict) -> str:
    lines = ["## A needle in an hour (`benchmarks/needle.py`)", "", "```", command, "```", "",
             (f"Model `{meta['model']}`; {len(needles)} videos of {meta['minutes']:g} min at 1 fps "
              f"({needles[0].frames} frames, 64x64 px), one {meta['event']} s event each; budget "
              f"{meta['budget']} visual tokens; torch threads {meta['threads']}. Tokens/frame: visual tokens over "
              "all the video's frames, and over the frames that keep any. Event frames kept: of its frames, how many "
              "keep tokens. Token share vs time share: the event's part of the tokens and of the video. Prompt: "
              "its whole length (visual tokens, one frame separator per kept frame, text)."), "",
             ("| trial (event at, direction) | method | frames decoded | visual | prompt | tokens/frame video / kept "
              "| event frames kept | event token share / time share | answer (truth) | s total "
              "| s per stage |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, (needle, rows) in enumerate(zip(needles, results)):
        for r in rows:
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r["seconds"].items())
            share = f"{r['event_token_share']:.4f} / {r['event_time_share']:.4f}"
            if "event_segments" in r:
                share += (f" (segments {r['event_segments']}: {r['event_segment_token_share']:.4f} / "
                          f"{r['event_segment_time_share']:.4f}, relevance rank {r['event_segment_rank']} "
                          f"of {r['segments']})")
            lines.append(
                f"| {i} ({needle.start} s, {needle.direction}) | {r['method']} | {r['decoded_frames']} | "
                f"{r['visual_tokens']} | {r['prompt_tokens']} | {r['tokens_per_hour_frame']:.2f} / "
                f"{r['tokens_per_kept_frame']:.2f} | {r['event_frames_with_tokens']} of {r['event_frames']} | "
                f"{share} | {r['predicted']} ({r['answer']}): {'correct' if r['correct'] else 'wrong'} | "
                f"{r['total_seconds']:.1f} | {stages} |")
    methods = sorted({r["method"] for rows in results for r in rows})
    lines += ["", "Right answers: " + ", ".join(
        f"{m} {sum(r['correct'] for rows in results for r in rows if r['method'] == m)} of {len(results)}"
        for m in methods) + " (chance 1 in 4)."]
    return "\n".join(lines) + "\n"


def plot(needle: Needle, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 2.2 * len(rows) + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    width = max(1, needle.frames // 360)  # frames per bin over the hour
    zoom = range(max(0, needle.start - 30), min(needle.frames, needle.stop + 30))
    for (whole, near), r in zip(axes, rows):
        tokens = np.asarray(r["tokens_per_frame"], dtype=float)
        binned = tokens[: len(tokens) // width * width].reshape(-1, width).mean(axis=1)  # (bins,)
        whole.plot(np.arange(len(binned)) * width / 60, binned, linewidth=0.8)
        near.bar(list(zoom), tokens[zoom.start : zoom.stop], width=1.0)
        for ax, scale in ((whole, 60), (near, 1)):
            ax.axvspan(needle.start / scale, needle.stop / scale, color="tab:red", alpha=0.3, linewidth=0, zorder=0)
            ax.grid(alpha=0.3)
        verdict = "right" if r["correct"] else "wrong"
        whole.set_ylabel(f"{r['method']}\ntokens/frame")
        whole.set_title(f"{r['method']}: {r['visual_tokens']} tokens, {r['tokens_per_hour_frame']:.2f} a frame "
                        f"on average ({width} s bins); answer {verdict}", fontsize=9)
        near.set_title(f"around the event (red): {r['event_frames_with_tokens']} of {r['event_frames']} frames "
                       "kept", fontsize=9)
    axes[-1][0].set_xlabel("minutes")
    axes[-1][1].set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from tempflex.ask import DEFAULT_MODEL, Asker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a saved TempFlex model dir")
    parser.add_argument("--trials", type=int, default=3, help="videos, each with the event at another time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=60.0, help="video length (1 fps)")
    parser.add_argument("--event-seconds", type=int, default=6, help="how long the circle is visible")
    parser.add_argument("--noise", type=int, default=2, help="per-frame pixel noise, +- levels (0: identical)")
    parser.add_argument("--budget", type=int, default=8192, help="visual tokens")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"of uniform, {', '.join(SPECS)}")
    parser.add_argument("--segment-frames", type=int, default=16, help="frames per ata segment")
    parser.add_argument("--videos", type=Path, default=ROOT / "runs/needle")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/needle",
                        help="writes OUT.json and OUT.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/needle.png")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 was 2-3x faster than 2 while another job kept the 2 cores busy")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in ("uniform", *SPECS) for m in methods):
        parser.error(f"--methods must be of uniform, {', '.join(SPECS)}; got {args.methods}")
    command = ".venv/bin/python benchmarks/needle.py " + shlex.join(sys.argv[1:])
    needles = [make_needle(args.videos, args.seed, t, args.minutes, 64, args.event_seconds, args.noise)
               for t in range(args.trials)]
    asker = Asker(args.model, threads=args.threads)
    cache = cache_dir(asker.model_dir, args.videos, args.videos / "results")
    results = []
    for i, needle in enumerate(needles):
        decoded: dict = {}
        rows = []
        for method in methods:
            spec = SPECS.get(method, "uniform").format(budget=args.budget, segment=args.segment_frames)
            path = cache / f"{Path(needle.path).stem}-{method}-{args.budget}.json"
            saved = json.loads(path.read_text()) if path.is_file() else None
            if saved is None or saved.get("key") != f"{needle.key}|{spec}":
                print(f"trial {i}: {method} ...", file=sys.stderr, flush=True)
                row = run_method(asker, needle, method, args.budget, args.segment_frames, decoded)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(path, json.dumps({"key": f"{needle.key}|{spec}", "row": row}) + "\n")
                saved = {"row": row}
            rows.append(saved["row"])
            r = saved["row"]
            print(f"trial {i} {method}: {r['visual_tokens']} tokens, {r['tokens_per_hour_frame']:.2f}/frame, "
                  f"event frames kept {r['event_frames_with_tokens']}/{r['event_frames']}, "
                  f"{'right' if r['correct'] else 'wrong'}, {r['total_seconds']:.1f} s", file=sys.stderr)
        results.append(rows)
    meta = {"model": shown(args.model), "minutes": args.minutes, "event": args.event_seconds, "budget": args.budget,
            "noise": args.noise, "threads": torch.get_num_threads(), "command": command}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "trials": [{"needle": asdict(n), "results": rows} for n, rows in zip(needles, results)]}
    args.out.with_suffix(".json").write_text(json.dumps(payload) + "\n")
    text = markdown(needles, results, command, meta)
    args.out.with_suffix(".md").write_text(text)
    plot(needles[0], results[0], args.plot)
    print(text)


if __name__ == "__main__":
    main()
