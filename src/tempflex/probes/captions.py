"""Dense captions of probe videos, from what was drawn (``Probe.params``): the alignment data of stage 1.

A multiple-choice answer carries about two bits per video; a frozen LLM gives a visual encoder trained from scratch
too little signal to learn from that alone (tempflex-tiny stayed at chance for 150 steps on answers only). As in
the paper's stage 1, alignment trains on captions that name everything the questions ask about.
"""

from __future__ import annotations

DESCRIBE = "Describe the video."


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _times(k: int) -> str:
    return f"{k} time" + ("s" if k != 1 else "")


def caption(skill: str, p: dict) -> str:
    """One sentence saying what the probe video of ``skill`` with parameters ``p`` shows."""
    if skill == "object_direction":
        return f"{_a(p['colour']).capitalize()} {p['shape']} moves {p['direction']}."
    if skill == "camera_direction":
        return f"The camera moves {p['direction']}."
    if skill == "speed_change":
        how = {"faster": "getting faster", "slower": "getting slower", "constant": "at a constant speed"}[p["change"]]
        return f"{_a(p['colour']).capitalize()} {p['shape']} moves {p['direction']}, {how}."
    if skill == "event_order":
        first, second, third = p["order"]
        return f"{_a(first).capitalize()} shape appears first, then {_a(second)} one, and {_a(third)} one appears last."
    if skill == "counting":
        text = f"{_a(p['colour']).capitalize()} {p['shape']} appears {_times(p['count'])}"
        if p.get("decoy_flashes"):
            text += f", and {_a(p['decoy_colour'])} shape {_times(p['decoy_flashes'])}"
        return text + "."
    if skill == "attribute_change":
        if p["kind"] == "colour":
            return f"{_a(p['from']).capitalize()} {p['shape']} turns {p['to']}."
        how = {"bigger": "gets bigger", "smaller": "gets smaller", "unchanged": "keeps its size"}[p["change"]]
        return f"{_a(p['colour']).capitalize()} {p['shape']} {how}."
    if skill == "periodic":
        verb = "blinks" if p["kind"] == "blink" else "moves back and forth"
        return f"{_a(p['colour']).capitalize()} {p['shape']} {verb} {_times(p['cycles'])}."
    if skill == "before_after":
        event = "the frame flashes" if p["event"] == "flash" else f"it turns {p['to']}"
        return f"{_a(p['colour']).capitalize()} {p['shape']} moves {p['before']}, then {event} and it moves {p['after']}."
    if skill == "appearance":
        return f"{_a(p['colour']).capitalize()} {p['shape']}."
    if skill == "spatial_relation":
        (c1, s1, _), (c2, s2, _) = p["subject"], p["reference"]
        relation = p["relation"] if p["relation"] in ("above", "below") else f"is {p['relation']}"
        return f"{_a(c1).capitalize()} {s1} {relation} {_a(c2)} {s2}."
    raise ValueError(f"no caption for skill {skill!r}")
