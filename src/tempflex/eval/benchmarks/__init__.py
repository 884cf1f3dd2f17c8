"""The built-in benchmarks by name (``tempflex.eval.registry`` starts from ``BUILTIN``)."""

from __future__ import annotations

from tempflex.eval.benchmarks.egoschema import EgoSchema
from tempflex.eval.benchmarks.longvideobench import LongVideoBench
from tempflex.eval.benchmarks.mlvu import MLVU
from tempflex.eval.benchmarks.mvbench import MVBench
from tempflex.eval.benchmarks.nextqa import NExTQA
from tempflex.eval.benchmarks.probes import Probes
from tempflex.eval.benchmarks.tempcompass import TempCompass, TempCompassCaptions, TempCompassYesNo
from tempflex.eval.benchmarks.videomme import VideoMME, VideoMMESubtitles

BUILTIN = {  # name -> a benchmark class (built with no arguments)
    "egoschema": EgoSchema,
    "longvideobench": LongVideoBench,
    "mlvu": MLVU,
    "mvbench": MVBench,
    "nextqa": NExTQA,
    "probes": Probes,
    "tempcompass_caption_matching": TempCompassCaptions,
    "tempcompass_mc": TempCompass,
    "tempcompass_yes_no": TempCompassYesNo,
    "videomme": VideoMME,
    "videomme_w_subtitle": VideoMMESubtitles,
}
