"""Synthetic temporal probes: short H.264 videos of coloured shapes with one multiple-choice question each.

Each probe tests one skill of the TempFlex paper (object and camera direction, speed change, event order,
counting, attribute change, periodic motion, before/after an event) or is a static control (appearance, spatial
relation). ``generate_probes`` writes a set in the project's LLaVA record format; see docs/probes.md.
"""

from tempflex.probes.generate import ProbeSettings, ProbeSummary, generate_probes, probe_record, sample_probe
from tempflex.probes.skills import SKILLS, ClipSpec, Probe, Skill

__all__ = [
    "SKILLS",
    "ClipSpec",
    "Probe",
    "ProbeSettings",
    "ProbeSummary",
    "Skill",
    "generate_probes",
    "probe_record",
    "sample_probe",
]
