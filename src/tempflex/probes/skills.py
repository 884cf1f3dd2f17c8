"""One generator per probed skill (the temporal skills of the TempFlex paper, plus two static controls).

Every generator has the ``Skill`` signature ``(rng, spec) -> Probe``: it draws everything from ``rng``, in a fixed
order, so one rng state gives one probe. Objects are ``size/4 .. size/3`` px (about two 16-px patches); every
event lasts >= 2 frames so that it survives H.264; options are shuffled by ``rng`` so the answer's position is
uniform. Distractors come from a child of ``rng`` and are drawn under the objects, so a probe with distractors
shows the same objects and asks the same question, options in the same order, as without; they never take a
colour (or, where the question names only a shape, a shape) that the question or its options use. See docs/probes.md for each skill.

Shapes: T frames of S x S px; clips are (T, S, S, 3) uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tempflex.probes.render import (
    COLOURS,
    SHAPES,
    Track,
    draw_border,
    draw_shape,
    draw_tracks,
    plain_clip,
    textured_background,
)

DIRECTIONS = ("left", "right", "up", "down")
UNIT = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # image axes: y grows downwards
COUNTS = ("1", "2", "3", "4")
MIN_RUN = 2  # frames an event (a flash, a gap, a blink) lasts at least


@dataclass(frozen=True)
class ClipSpec:
    """What a skill generator is told about the clip to make."""

    frames: int  # T
    size: int  # S: the clip is S x S px
    distractors: int = 0  # extra small shapes that do not change the answer
    speed: float = 1.0  # scales motion amplitudes (0.5: half the distance, harder)
    landmark: float = 0.5  # chance that a camera pan shows a saturated shape fixed in the world (1.0: easier)


@dataclass
class Probe:
    """One generated question about one clip."""

    frames: np.ndarray  # (T, S, S, 3) uint8
    question: str
    options: list[str]
    answer: int  # index into ``options``
    temporal: bool  # False for the static controls: one frame is enough
    params: dict[str, Any] = field(default_factory=dict)  # what was drawn; JSON-serialisable


class Skill(Protocol):
    def __call__(self, rng: np.random.Generator, spec: ClipSpec) -> Probe: ...


# ----------------------------------------------------------------------------------------------- helpers


def _pick(rng: np.random.Generator, items: Sequence[str], k: int = 1, exclude: Sequence[str] = ()) -> list[str]:
    pool = [i for i in items if i not in exclude]
    return [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)]


def _shuffled(rng: np.random.Generator, options: list[str], correct: int) -> tuple[list[str], int]:
    """Options in a random order and the new index of the correct one."""
    order = [int(i) for i in rng.permutation(len(options))]
    return [options[i] for i in order], order.index(correct)


def _object_size(rng: np.random.Generator, spec: ClipSpec) -> float:
    return float(rng.uniform(spec.size / 4, spec.size / 3))


def _bounds(spec: ClipSpec, size: float) -> tuple[float, float]:
    """The range of centre coordinates that keeps a shape of ``size`` px wholly inside the frame."""
    return size / 2 + 1, spec.size - 2 - size / 2


def _straight(rng: np.random.Generator, spec: ClipSpec, size: float, distance: float, direction: str):
    """(start, end) of a straight path of ``distance`` px (clamped to the frame) in ``direction``, starting at a
    random point on the far side and at a random height (or column) across."""
    lo, hi = _bounds(spec, size)
    distance = min(distance, hi - lo)
    a0 = lo + float(rng.random()) * (hi - lo - distance)
    a1 = a0 + distance
    if direction in ("left", "up"):
        a0, a1 = lo + hi - a0, lo + hi - a1
    b = float(rng.uniform(lo, hi))
    return ((a0, b), (a1, b)) if direction in ("left", "right") else ((b, a0), (b, a1))


def _onsets(rng: np.random.Generator, k: int, lo: int, hi: int, gap: int) -> list[int]:
    """``k`` random sorted frames in [lo, hi], at least ``gap`` apart."""
    slack = hi - lo - gap * (k - 1)
    picks = sorted(int(i) for i in rng.choice(slack + 1, size=k, replace=True))
    return [lo + p + gap * i for i, p in enumerate(picks)]


def _windows(rng: np.random.Generator, k: int, frames: int) -> list[tuple[int, int]]:
    """``k`` [start, stop) windows of 2-3 frames, >= 2 frames apart, at random times in the clip."""
    lengths = [int(v) for v in rng.integers(MIN_RUN, MIN_RUN + 2, size=k)]
    while sum(lengths) + MIN_RUN * (k - 1) > frames:  # long flashes do not fit: shorten some
        lengths[lengths.index(max(lengths))] -= 1
    slack = frames - sum(lengths) - MIN_RUN * (k - 1)
    extra = rng.multinomial(slack, [1 / (k + 1)] * (k + 1))  # spare frames before, between and after
    windows, t = [], int(extra[0])
    for i, n in enumerate(lengths):
        windows.append((t, t + n))
        t += n + MIN_RUN + int(extra[i + 1])
    return windows


def _place_apart(rng: np.random.Generator, spec: ClipSpec, size: float, taken: list[tuple[float, float]],
                 tries: int = 100) -> tuple[float, float]:
    """A random centre at least ``1.2 * size`` from every point in ``taken`` (the last try if none is)."""
    lo, hi = _bounds(spec, size)
    for _ in range(tries):
        x, y = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
        if all(np.hypot(x - a, y - b) >= 1.2 * size for a, b in taken):
            break
    return x, y


def _distractors(rng: np.random.Generator, spec: ClipSpec, colours: Sequence[str],
                 shapes: Sequence[str] = SHAPES, area: int | None = None) -> list[Track]:
    """``spec.distractors`` small shapes (size/7 .. size/5) in colours other than ``colours``, half of them still,
    half drifting by at most size/8 over the clip, inside an ``area`` px square (default: the frame)."""
    rng = rng.spawn(1)[0]  # a child stream: the caller's draws are the same with or without distractors
    free = [c for c in COLOURS if c not in colours]
    area = area or spec.size
    tracks = []
    for _ in range(spec.distractors):
        size = float(rng.uniform(spec.size / 7, spec.size / 5))
        colour = free[int(rng.integers(len(free)))]
        shape = shapes[int(rng.integers(len(shapes)))]
        start = rng.uniform(size / 2, area - size / 2, size=2)
        drift = rng.uniform(-spec.size / 8, spec.size / 8, size=2) * (rng.random() < 0.5)
        end = np.clip(start + drift, size / 2, area - size / 2)
        tracks.append(Track.moving(shape, colour, tuple(start), tuple(end), size, spec.frames))
    return tracks


def _scene(spec: ClipSpec, tracks: list[Track], distractors: list[Track]) -> np.ndarray:
    return draw_tracks(plain_clip(spec.frames, spec.size), distractors + tracks)


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _r(value: float) -> float:
    return round(float(value), 2)


def _direction_probe(rng: np.random.Generator, frames: np.ndarray, question: str, direction: str,
                     params: dict) -> Probe:
    options, answer = _shuffled(rng, list(DIRECTIONS), DIRECTIONS.index(direction))
    return Probe(frames, question, options, answer, True, params)


# ------------------------------------------------------------------------------------------------ skills


def object_direction(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """A shape crosses a good part of the frame (0.6 * S * speed px) left, right, up or down."""
    direction = DIRECTIONS[int(rng.integers(4))]
    (colour,), (shape,), size = _pick(rng, list(COLOURS)), _pick(rng, SHAPES), _object_size(rng, spec)
    start, end = _straight(rng, spec, size, 0.6 * spec.size * spec.speed, direction)
    track = Track.moving(shape, colour, start, end, size, spec.frames)
    frames = _scene(spec, [track], _distractors(rng, spec, [colour]))
    params = {"direction": direction, "colour": colour, "shape": shape, "size": _r(size),
              "start": [_r(v) for v in start], "end": [_r(v) for v in end]}
    return _direction_probe(rng, frames, f"Which way does the {colour} {shape} move?", direction, params)


def camera_direction(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """The camera pans over a textured world by 0.5 * S * speed px; the content moves the opposite way. With
    chance ``spec.landmark`` a saturated shape is fixed in the world: it moves across the frame like an object, a
    first-order cue; without it only the texture's shift tells the direction."""
    direction = DIRECTIONS[int(rng.integers(4))]
    pan = 0.5 * spec.size * spec.speed
    side = spec.size + int(np.ceil(pan)) + 1
    world = textured_background(rng, side, side)
    landmark = bool(rng.random() < spec.landmark)  # one draw whatever the chance: the rest stays the same
    if landmark:
        (colour,), (shape,), size = _pick(rng, list(COLOURS)), _pick(rng, SHAPES), _object_size(rng, spec)
        draw_shape(world, shape, colour, rng.uniform(0, side), rng.uniform(0, side), size)
    for track in _distractors(rng, spec, [], area=side):
        draw_shape(world, track.shape, track.colour[0], track.x[0], track.y[0], track.size[0])
    ux, uy = UNIT[direction]
    across = rng.uniform(0, side - spec.size)
    u = np.linspace(0.0, 1.0, spec.frames)
    ox = np.rint(pan * (u if ux > 0 else 1 - u) if ux else np.full_like(u, across)).astype(int)
    oy = np.rint(pan * (u if uy > 0 else 1 - u) if uy else np.full_like(u, across)).astype(int)
    frames = np.stack([world[y:y + spec.size, x:x + spec.size] for x, y in zip(ox, oy)])  # (T, S, S, 3)
    params = {"direction": direction, "pan_px": _r(pan), "landmark": landmark}
    return _direction_probe(rng, frames, "Which way does the camera move?", direction, params)


SPEED_KINDS = ("faster", "slower", "constant")  # distinct first words: one forward scores them


def speed_change(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """A shape moves straight; its velocity ramps linearly to 4-6x (or 1/6-1/4 of) its start, or stays constant."""
    kind = int(rng.integers(3))
    direction = DIRECTIONS[int(rng.integers(4))]
    (colour,), (shape,), size = _pick(rng, list(COLOURS)), _pick(rng, SHAPES), _object_size(rng, spec)
    start, end = _straight(rng, spec, size, 0.7 * spec.size * spec.speed, direction)
    ratio = float(rng.uniform(4, 6)) if kind < 2 else 1.0
    ratio = 1 / ratio if kind == 1 else ratio  # v_end / v_start
    u = np.linspace(0.0, 1.0, spec.frames)
    progress = (u + (ratio - 1) * u**2 / 2) / ((ratio + 1) / 2)  # integral of v(u) = 1 + (ratio - 1) u, to 1
    track = Track.moving(shape, colour, start, end, size, spec.frames, progress)
    frames = _scene(spec, [track], _distractors(rng, spec, [colour]))
    options, answer = _shuffled(rng, list(SPEED_KINDS), kind)
    params = {"change": SPEED_KINDS[kind], "ratio": _r(ratio), "direction": direction, "colour": colour,
              "shape": shape}
    return Probe(frames, f"Does the {colour} {shape} get faster, get slower, or keep a constant speed?", options, answer, True, params)


def event_order(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """Three shapes of distinct colours appear one after another (>= 2 frames apart, after an empty first frame)
    and stay; the question asks for the first or the last colour, against a fourth colour not in the video."""
    colours = _pick(rng, list(COLOURS), 4)  # three shown in this order, the fourth absent
    ask = ("first", "last")[int(rng.integers(2))]
    onsets = _onsets(rng, 3, 1, spec.frames - MIN_RUN, MIN_RUN)
    tracks, taken = [], []
    for colour, onset in zip(colours[:3], onsets):
        (shape,), size = _pick(rng, SHAPES), _object_size(rng, spec)
        taken.append(_place_apart(rng, spec, size, taken))
        track = Track.still(shape, colour, taken[-1], size, spec.frames)
        tracks.append(track.shown(np.arange(spec.frames) >= onset))
    frames = _scene(spec, tracks, _distractors(rng, spec, colours))
    options, answer = _shuffled(rng, colours, 0 if ask == "first" else 2)
    params = {"order": colours[:3], "onsets": onsets, "absent": colours[3], "ask": ask}
    return Probe(frames, f"Which colour appears {ask}?", options, answer, True, params)


def counting(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """A shape of the target colour flashes k times (2-3 frames on, >= 2 off, a new place each time); half the
    clips add 1-3 flashes of a second colour."""
    k_max = min(4, (spec.frames + MIN_RUN) // (2 * MIN_RUN))
    k = int(rng.integers(1, k_max + 1))
    colour, other = _pick(rng, list(COLOURS), 2)
    (shape,), size = _pick(rng, SHAPES), _object_size(rng, spec)
    t = np.arange(spec.frames)
    targets, taken = [], []
    for a, b in _windows(rng, k, spec.frames):
        taken.append(_place_apart(rng, spec, size, taken))
        targets.append(Track.still(shape, colour, taken[-1], size, spec.frames).shown((t >= a) & (t < b)))
    decoys = []
    if rng.random() < 0.5:
        (decoy_shape,) = _pick(rng, SHAPES)
        for a, b in _windows(rng, int(rng.integers(1, k_max)), spec.frames):  # k_max >= 2 for T >= 8
            at = _place_apart(rng, spec, size, taken)
            decoys.append(Track.still(decoy_shape, other, at, size, spec.frames).shown((t >= a) & (t < b)))
    frames = _scene(spec, decoys + targets, _distractors(rng, spec, [colour, other]))
    options, answer = _shuffled(rng, list(COUNTS), k - 1)
    params = {"count": k, "colour": colour, "shape": shape, "decoy_flashes": len(decoys), "decoy_colour": other}
    return Probe(frames, f"How many times does {_a(colour)} shape appear?", options, answer, True, params)


SIZE_KINDS = ("bigger", "smaller", "unchanged")


def attribute_change(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """A still shape either changes colour once, in the middle half of the clip, or changes size steadily by
    2.2-2.8x (grows or shrinks) or keeps it."""
    (shape,) = _pick(rng, SHAPES)
    t = np.arange(spec.frames)
    if rng.random() < 0.5:
        a, b, c, d = _pick(rng, list(COLOURS), 4)
        edge = max(MIN_RUN, spec.frames // 4)  # the change falls in the middle half, each colour >= 2 frames
        change = int(rng.integers(edge, spec.frames - edge + 1))
        size = _object_size(rng, spec)
        lo, hi = _bounds(spec, size)
        track = Track.still(shape, a, (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))), size, spec.frames)
        track.colour = [a if i < change else b for i in t]
        frames = _scene(spec, [track], _distractors(rng, spec, [a, b, c, d], [s for s in SHAPES if s != shape]))
        options, answer = _shuffled(rng, [b, a, c, d], 0)  # the start colour a is the temporal distractor
        params = {"kind": "colour", "shape": shape, "from": a, "to": b, "frame": change}
        return Probe(frames, f"What colour does the {shape} turn into?", options, answer, True, params)
    kind = int(rng.integers(3))
    (colour,) = _pick(rng, list(COLOURS))
    small = float(rng.uniform(spec.size / 7, spec.size / 5.5))
    big = small * float(rng.uniform(2.2, 2.8))
    sizes = {0: (small, big), 1: (big, small), 2: (_object_size(rng, spec),) * 2}[kind]
    lo, hi = _bounds(spec, max(sizes))
    track = Track.still(shape, colour, (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))), 0, spec.frames)
    track.size = np.linspace(sizes[0], sizes[1], spec.frames)
    frames = _scene(spec, [track], _distractors(rng, spec, [colour]))
    options, answer = _shuffled(rng, list(SIZE_KINDS), kind)
    params = {"kind": "size", "change": SIZE_KINDS[kind], "colour": colour, "shape": shape,
              "sizes": [_r(s) for s in sizes]}
    return Probe(frames, f"Does the {colour} {shape} get bigger, get smaller, or keep its size?", options, answer, True, params)


def periodic(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """k full cycles (k <= T / 4, so >= 4 frames a cycle): a blink (off, then on, each half a cycle) or a
    swing from one end of a 0.6 * S * speed px stroke to the other and back."""
    k = int(rng.integers(1, min(4, spec.frames // 4) + 1))
    (colour,), (shape,), size = _pick(rng, list(COLOURS)), _pick(rng, SHAPES), _object_size(rng, spec)
    phase = np.arange(spec.frames) * k / spec.frames  # (T,) cycles elapsed
    lo, hi = _bounds(spec, size)
    if rng.random() < 0.5:
        kind, verb = "blink", "blink"
        at = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
        track = Track.still(shape, colour, at, size, spec.frames).shown(phase % 1 >= 0.5)
        extra = {}
    else:
        kind, verb = "swing", "move back and forth"
        direction = DIRECTIONS[int(rng.integers(4))]  # the way of the first stroke
        start, end = _straight(rng, spec, size, 0.6 * spec.size * spec.speed, direction)
        track = Track.moving(shape, colour, start, end, size, spec.frames, (1 - np.cos(2 * np.pi * phase)) / 2)
        extra = {"direction": direction, "stroke_px": _r(abs(sum(e - s for s, e in zip(start, end))))}
    frames = _scene(spec, [track], _distractors(rng, spec, [colour]))
    options, answer = _shuffled(rng, list(COUNTS), k - 1)
    params = {"kind": kind, "cycles": k, "colour": colour, "shape": shape, **extra}
    return Probe(frames, f"How many times does the {colour} {shape} {verb}?", options, answer, True, params)


def before_after(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """A shape moves one way, an event happens (the border flashes white for 2 frames, or the shape changes
    colour), then it moves another way; each leg is >= T/3 frames and 0.35 * S * speed px."""
    d1 = DIRECTIONS[int(rng.integers(4))]
    (d2,) = _pick(rng, DIRECTIONS, exclude=[d1])
    event = ("flash", "colour")[int(rng.integers(2))]
    ask = ("before", "after")[int(rng.integers(2))]
    a, b = _pick(rng, list(COLOURS), 2, exclude=["white"])
    (shape,), size = _pick(rng, SHAPES), _object_size(rng, spec)
    turn = int(rng.integers(-(-spec.frames // 3), 2 * spec.frames // 3 + 1))  # the frame of the turn and event
    lo, hi = _bounds(spec, size)
    leg = min(0.35 * spec.size * spec.speed, hi - lo)
    v1, v2 = np.array(UNIT[d1]), np.array(UNIT[d2])
    low = np.maximum.reduce([np.full(2, lo), lo + leg * v1, lo - leg * v2])  # (2,): the turn point and both
    high = np.minimum.reduce([np.full(2, hi), hi + leg * v1, hi - leg * v2])  # ends of the legs in the frame
    mid = rng.uniform(low, high)
    t = np.arange(spec.frames)
    s = np.minimum(t, turn)[:, None] / turn * leg  # (T, 1) px travelled on leg 1
    s2 = np.maximum(t - turn, 0)[:, None] / (spec.frames - 1 - turn) * leg  # (T, 1) px on leg 2
    xy = mid - leg * v1 + s * v1 + s2 * v2  # (T, 2)
    track = Track(shape, xy[:, 0], xy[:, 1], np.full(spec.frames, size), [a] * spec.frames)
    if event == "colour":
        track.colour = [a if i <= turn else b for i in t]
        question = f"Which way does the {shape} move {ask} it changes colour?"
        frames = _scene(spec, [track], _distractors(rng, spec, [a, b], [x for x in SHAPES if x != shape]))
    else:
        question = f"Which way does the {a} {shape} move {ask} the flash?"
        frames = plain_clip(spec.frames, spec.size)
        for i in (turn, turn + 1):
            draw_border(frames[i], "white", max(2, spec.size // 16))  # under the shapes, which it never hides
        draw_tracks(frames, _distractors(rng, spec, [a, "white"]) + [track])
    params = {"before": d1, "after": d2, "event": event, "ask": ask, "turn_frame": turn, "colour": a,
              "shape": shape, **({"to": b} if event == "colour" else {})}
    return _direction_probe(rng, frames, question, d1 if ask == "before" else d2, params)


def appearance(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """Static control: one shape, jittering by up to 1 px; the options are 4 of the 5 shapes. Distractors take
    the one shape left out of the options, so the question keeps one answer."""
    (colour,), size = _pick(rng, list(COLOURS)), _object_size(rng, spec)
    options = _pick(rng, SHAPES, 4)  # options[0] is shown
    lo, hi = _bounds(spec, size)
    at = rng.uniform(lo + 1, hi - 1, size=2)
    jitter = rng.integers(-1, 2, size=(spec.frames, 2))  # (T, 2) px
    track = Track(options[0], at[0] + jitter[:, 0], at[1] + jitter[:, 1], np.full(spec.frames, size),
                  [colour] * spec.frames)
    left_out = [s for s in SHAPES if s not in options]
    frames = _scene(spec, [track], _distractors(rng, spec, [colour], left_out))
    shuffled, answer = _shuffled(rng, options, 0)
    params = {"shape": options[0], "colour": colour, "size": _r(size), "at": [_r(track.x[0]), _r(track.y[0])]}
    return Probe(frames, "What shape is in the video?", shuffled, answer, False, params)


RELATIONS = ("left of", "right of", "above", "below")


def spatial_relation(rng: np.random.Generator, spec: ClipSpec) -> Probe:
    """Static control: two still shapes >= 0.35 * S px apart along one axis and within S/10 px across it."""
    relation = int(rng.integers(4))
    c1, c2 = _pick(rng, list(COLOURS), 2)
    s1, s2 = (_pick(rng, SHAPES)[0] for _ in range(2))
    size1, size2 = _object_size(rng, spec), _object_size(rng, spec)
    lo, hi = _bounds(spec, max(size1, size2))
    gap = float(rng.uniform(max(0.35 * spec.size, (size1 + size2) / 2 + 2), hi - lo))
    first = lo + float(rng.random()) * max(0.0, hi - lo - gap)  # the smaller coordinate along the axis
    a1, a2 = (first, first + gap) if relation in (0, 2) else (first + gap, first)  # subject left of / above
    b2 = float(rng.uniform(lo, hi))
    b1 = float(np.clip(b2 + rng.uniform(-spec.size / 10, spec.size / 10), lo, hi))
    p1, p2 = ((a1, b1), (a2, b2)) if relation < 2 else ((b1, a1), (b2, a2))
    tracks = [Track.still(s2, c2, p2, size2, spec.frames), Track.still(s1, c1, p1, size1, spec.frames)]
    frames = _scene(spec, tracks, _distractors(rng, spec, [c1, c2]))
    options, answer = _shuffled(rng, list(RELATIONS), relation)
    params = {"relation": RELATIONS[relation], "subject": [c1, s1, [_r(v) for v in p1]],
              "reference": [c2, s2, [_r(v) for v in p2]]}
    return Probe(frames, f"Where is the {c1} {s1} relative to the {c2} {s2}?", options, answer, False, params)


SKILLS: dict[str, Skill] = {
    "object_direction": object_direction,
    "camera_direction": camera_direction,
    "speed_change": speed_change,
    "event_order": event_order,
    "counting": counting,
    "attribute_change": attribute_change,
    "periodic": periodic,
    "before_after": before_after,
    "appearance": appearance,
    "spatial_relation": spatial_relation,
}
