"""The built-in benchmarks; importing this package registers them (``tempflex.eval.base.get_benchmark``)."""

from tempflex.eval.benchmarks import (
    egoschema,
    longvideobench,
    mlvu,
    mvbench,
    nextqa,
    probes,
    tempcompass,
    videomme,
)

__all__ = ["egoschema", "longvideobench", "mlvu", "mvbench", "nextqa", "probes", "tempcompass", "videomme"]
