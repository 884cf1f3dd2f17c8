"""Statistics of a synthesis output, like the paper's figure 5: question dimensions and data sources.

Figure 5(a) of the paper is the distribution of samples over the question dimensions; 5(b) the samples of each data
source, separately for captions and open-ended VQA. ``build_report`` counts the same from ``OUT/shards/*.jsonl`` and
``OUT/rejected.jsonl``: per dimension, the QA pairs by kind ("vision": from the frames only; "vision_text": frames plus
the transcript/metadata); per source, the videos accepted (one caption each) and rejected and the QA pairs by kind;
rejections grouped by reason; token usage summed from the API's ``usage`` fields and, given prices, its cost.

If ``OUT/dedup.json`` exists (``tempflex.synth.dedup``), the QA counts leave out what it drops and the report says
how much that was; token usage and cost always count every accepted video, since those requests were paid for.
Rejected lines carry no ``usage``, so the cost is a lower bound when there are rejections.

Prices are per 1M tokens and given by the caller, e.g. ``{"prompt": 2.50, "completion": 10.00}`` (USD, the shape of
a provider's price list; check the provider's page): there is no default.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tempflex.synth.dedup import iter_records, load_dropped

KINDS = ("vision", "vision_text")  # the prompt's vqa-type1 and vqa-type2


@dataclass
class SourceStats:
    videos: int = 0  # accepted videos = caption samples
    rejected: int = 0
    qa: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))  # kind -> QA pairs


@dataclass
class Report:
    videos_accepted: int  # accepted records, before de-duplication (per-source ``videos`` are after it)
    videos_rejected: int
    rejected_by_reason: dict[str, int]  # reason -> videos, most frequent first
    qa_total: int  # after de-duplication when dedup.json exists
    qa_by_kind: dict[str, int]
    by_dimension: dict[str, dict[str, int]]  # dimension -> kind -> QA pairs, largest first
    by_source: dict[str, SourceStats]  # sorted by source name
    prompt_tokens: int
    completion_tokens: int
    models: dict[str, int]  # model name -> accepted videos
    prices: dict[str, float] | None  # per 1M tokens: {"prompt": p, "completion": c}
    cost: float | None  # prompt_tokens * p / 1e6 + completion_tokens * c / 1e6
    dedup: dict[str, int] | None  # {"videos_dropped", "questions_dropped"} or None without dedup.json

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _reason_key(reason: str) -> str:
    """Group free-text reasons by their head ("invalid JSON: line 3" -> "invalid JSON")."""
    return reason.split(":", 1)[0].strip() or "unknown"


def _count_rejections(out_dir: Path, sources: dict[str, SourceStats]) -> Counter[str]:
    reasons: Counter[str] = Counter()
    path = out_dir / "rejected.jsonl"
    if not path.exists():
        return reasons
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rejected = json.loads(line)
            reasons[_reason_key(str(rejected.get("reason", "")))] += 1
            sources.setdefault(str(rejected.get("source", "")), SourceStats()).rejected += 1
    return reasons


def _cost(prompt: int, completion: int, prices: Mapping[str, float] | None) -> float | None:
    if prices is None:
        return None
    if set(prices) != {"prompt", "completion"}:
        raise ValueError(
            f"prices must have exactly the keys 'prompt' and 'completion' (per 1M tokens): {prices}"
        )
    return prompt * float(prices["prompt"]) / 1e6 + completion * float(prices["completion"]) / 1e6


def build_report(out_dir: str | os.PathLike, prices: Mapping[str, float] | None = None) -> Report:
    """Count an output folder (module docstring); ``prices`` per 1M prompt/completion tokens, or None for no cost."""
    out = Path(out_dir)
    dropped_videos, dropped_questions = load_dropped(out)
    sources: dict[str, SourceStats] = {}
    dimensions: dict[str, Counter[str]] = {}
    models: Counter[str] = Counter()
    accepted = prompt = completion = 0
    for record in iter_records(out):
        video_id, stats = (
            str(record["video_id"]),
            sources.setdefault(str(record.get("source", "")), SourceStats()),
        )
        accepted += 1
        usage = record.get("usage") or {}
        prompt += int(usage.get("prompt_tokens", 0))
        completion += int(usage.get("completion_tokens", 0))
        models[str(record.get("model", ""))] += 1
        if video_id in dropped_videos:
            continue
        stats.videos += 1
        for index, pair in enumerate(record.get("qa", [])):
            if (video_id, index) not in dropped_questions:
                kind = str(pair["kind"])
                stats.qa[kind] = stats.qa.get(kind, 0) + 1
                dimensions.setdefault(str(pair["dimension"]), Counter())[kind] += 1
    reasons = _count_rejections(out, sources)
    by_kind = Counter({kind: 0 for kind in KINDS})
    for counts in dimensions.values():
        by_kind.update(counts)
    by_dimension = {
        d: {k: c.get(k, 0) for k in sorted(set(KINDS) | set(c))}
        for d, c in sorted(dimensions.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    }
    dedup = None
    if (out / "dedup.json").exists():
        dedup = {"videos_dropped": len(dropped_videos), "questions_dropped": len(dropped_questions)}
    return Report(
        videos_accepted=accepted,
        videos_rejected=sum(reasons.values()),
        rejected_by_reason=dict(reasons.most_common()),
        qa_total=sum(by_kind.values()),
        qa_by_kind=dict(by_kind),
        by_dimension=by_dimension,
        by_source=dict(sorted(sources.items())),
        prompt_tokens=prompt,
        completion_tokens=completion,
        models=dict(models.most_common()),
        prices=dict(prices) if prices is not None else None,
        cost=_cost(prompt, completion, prices),
        dedup=dedup,
    )


# ---------------------------------------------------------------------------------------------------- writing
def _markdown(report: Report) -> str:
    lines = ["# Synthesis report", ""]
    lines += [
        f"- videos accepted: {report.videos_accepted}, rejected: {report.videos_rejected}",
        f"- QA pairs: {report.qa_total} ({', '.join(f'{k}: {v}' for k, v in report.qa_by_kind.items())})",
        f"- tokens: {report.prompt_tokens:,} prompt + {report.completion_tokens:,} completion",
    ]
    if report.cost is not None and report.prices is not None:
        lines.append(
            f"- cost: {report.cost:.4f} at {report.prices['prompt']} / {report.prices['completion']} per 1M "
            "prompt / completion tokens (rejected requests not included)"
        )
    if report.dedup is not None:
        lines.append(
            f"- de-duplication (dedup.json): {report.dedup['videos_dropped']} videos and "
            f"{report.dedup['questions_dropped']} questions left out of the counts below"
        )
    lines += ["", "## QA pairs per dimension", "", "| dimension | " + " | ".join(KINDS) + " | total |"]
    lines.append("|---" * (len(KINDS) + 2) + "|")
    for dim, counts in report.by_dimension.items():
        cells = [str(counts.get(k, 0)) for k in KINDS]
        lines.append(f"| {dim} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    lines += [
        "",
        "## Per source",
        "",
        "| source | videos (captions) | rejected | " + " | ".join(KINDS) + " |",
    ]
    lines.append("|---" * (len(KINDS) + 3) + "|")
    for source, stats in report.by_source.items():
        cells = [str(stats.qa.get(k, 0)) for k in KINDS]
        lines.append(
            f"| {source or '(none)'} | {stats.videos} | {stats.rejected} | " + " | ".join(cells) + " |"
        )
    lines += ["", "## Rejections by reason", "", "| reason | videos |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in report.rejected_by_reason.items()]
    return "\n".join(lines) + "\n"


def _plot(report: Report, path: Path) -> None:
    """Figure 5 style: (a) QA per dimension stacked by kind; (b) per source captions and VQA by kind."""
    import matplotlib

    matplotlib.use("Agg")  # files only; set here, not at import, so importing never touches the backend
    import matplotlib.pyplot as plt

    colors = {"caption": "#999999", "vision": "#4C72B0", "vision_text": "#DD8452"}
    dims = list(report.by_dimension)[::-1]  # largest at the top
    sources = list(report.by_source)[::-1]
    height = max(3.0, 0.35 * max(len(dims), len(sources)) + 1.5)
    fig, (ax_dim, ax_src) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [3, 2]})
    left = [0] * len(dims)
    for kind in KINDS:
        values = [report.by_dimension[d].get(kind, 0) for d in dims]
        ax_dim.barh(dims, values, left=left, color=colors[kind], label=kind)
        left = [a + b for a, b in zip(left, values)]
    for y, total in enumerate(left):
        ax_dim.text(total, y, f" {total}", va="center", fontsize=8)
    ax_dim.set_title(f"(a) QA pairs per dimension (total {report.qa_total})")
    ax_dim.set_xlabel("QA pairs")
    ax_dim.margins(x=0.08)  # room for the totals
    ax_dim.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(KINDS), frameon=False)
    width, ys = 0.27, range(len(sources))
    series = [("caption", [report.by_source[s].videos for s in sources])]
    series += [(kind, [report.by_source[s].qa.get(kind, 0) for s in sources]) for kind in KINDS]
    for offset, (name, values) in zip((width, 0.0, -width), series):
        bars = ax_src.barh([y + offset for y in ys], values, height=width, color=colors[name], label=name)
        ax_src.bar_label(bars, padding=2, fontsize=7)
    ax_src.set_yticks(list(ys), [s or "(none)" for s in sources])
    ax_src.set_title("(b) samples per source")
    ax_src.set_xlabel("samples (captions = accepted videos)")
    ax_src.margins(x=0.12)
    ax_src.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: Report, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "report.png"}
    paths["json"].write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
    paths["md"].write_text(_markdown(report), encoding="utf-8")
    _plot(report, paths["png"])
    return paths
