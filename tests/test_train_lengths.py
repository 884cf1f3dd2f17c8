"""The media size cache beside a mixture (tempflex.train.lengths): built once, reused, stale and corrupt entries
recomputed, shared by processes that start at once, and used by ConversationDataset."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tempflex.samples import MediaSize, media_size, sample_videos
from tempflex.train.lengths import cache_for, media_sizes


def photos(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Real PNG files of the given (width, height)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"p{i}.png"
        Image.fromarray(np.full((h, w, 3), 40 * i % 256, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def media(tmp_path: Path) -> list[Path]:
    clip = tmp_path / "media" / "clip.mp4"
    paths = photos(tmp_path / "media", [(64, 32), (48, 96)])
    shutil.copy(sample_videos()[0], clip)
    return [*paths, clip]


def entries(cache: Path) -> dict[str, list]:
    return json.loads(cache.read_text())["entries"]


def test_sizes_are_the_headers_and_the_cache_is_reused(tmp_path: Path, media: list[Path]) -> None:
    cache = cache_for(tmp_path / "mix.yaml")
    assert cache == tmp_path / "mix.yaml.media-sizes.json"
    sizes = media_sizes(media + media[:1], cache)  # a path twice is read once
    assert sizes == {p: media_size(p) for p in media} and sizes[media[0]] == MediaSize(64, 32, None, None)
    assert sizes[media[2]].frames > 0
    # an entry that still matches its file's size and time is taken from the cache, not from the file: plant a
    # width no header has and read it back
    planted = entries(cache)
    planted[str(media[0])][2] = 999
    cache.write_text(json.dumps({"version": 1, "entries": planted}))
    assert media_sizes(media, cache)[media[0]].width == 999


def test_a_changed_file_is_read_again(tmp_path: Path, media: list[Path]) -> None:
    cache = cache_for(tmp_path / "mix.yaml")
    media_sizes(media, cache)
    before = cache.stat().st_mtime_ns
    assert media_sizes(media, cache)[media[1]] == MediaSize(48, 96, None, None)
    assert cache.stat().st_mtime_ns == before  # nothing changed: not rewritten
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(media[1])  # replaced by another picture
    os.utime(media[1], ns=(1, 1))  # and a time that cannot be the old one
    assert media_sizes(media, cache)[media[1]] == MediaSize(30, 20, None, None)
    assert entries(cache)[str(media[1])][:2] == [media[1].stat().st_size, 1]


@pytest.mark.parametrize("damage", [b"{\"version\": 1, \"entr", b"\x00\xff binary", b"[1, 2]",
                                    b"{\"version\": 0, \"entries\": {}}"])
def test_a_corrupt_cache_is_rebuilt_with_one_warning(tmp_path: Path, media: list[Path], damage: bytes,
                                                     capsys: pytest.CaptureFixture) -> None:
    cache = cache_for(tmp_path / "mix.yaml")
    cache.write_bytes(damage)
    assert media_sizes(media, cache) == {p: media_size(p) for p in media}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {cache} ") and "rebuilding it" in err
    assert set(entries(cache)) == {str(p) for p in media}
    media_sizes(media, cache)
    assert capsys.readouterr().err == ""


def test_a_missing_file_is_named_and_what_was_read_is_kept(tmp_path: Path, media: list[Path]) -> None:
    cache = cache_for(tmp_path / "mix.yaml")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        media_sizes([*media, tmp_path / "gone.png"], cache)
    assert set(entries(cache)) == {str(p) for p in media}


def test_a_cache_that_cannot_be_written_means_a_run_without_it(tmp_path: Path, media: list[Path],
                                                                 capsys: pytest.CaptureFixture) -> None:
    blocked = tmp_path / "a-file"  # a mixture "inside" a regular file: its lock and cache cannot be made (even as root)
    blocked.write_text("")
    assert media_sizes(media, cache_for(blocked / "mix.yaml")) == {p: media_size(p) for p in media}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: cannot lock the media size cache")


def _worker(paths: list[Path], cache: Path, barrier, results) -> None:
    barrier.wait()  # every process starts at the same moment
    results.put({str(p): list(s) for p, s in media_sizes(paths, cache).items()})


def test_processes_starting_at_once_share_one_cache(tmp_path: Path) -> None:
    paths = photos(tmp_path / "media", [(32 + 16 * i, 32) for i in range(40)])
    cache = cache_for(tmp_path / "mix.yaml")
    ctx = multiprocessing.get_context("fork")  # the workers read files only: no torch, no threads
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(paths, cache, barrier, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    want = {str(p): [32 + 16 * i, 32, None, None] for i, p in enumerate(paths)}
    assert got == [want] * 3
    assert {k: v[2:] for k, v in entries(cache).items()} == want
    assert not list(tmp_path.glob("*.tmp"))


def test_the_dataset_caches_beside_its_mixture(tmp_path: Path, media: list[Path]) -> None:
    from test_train_data import _processor, conv

    from tempflex.train.data import ConversationDataset

    records = [{"id": f"r{i}", "image": str(p.relative_to(tmp_path / "media")), "conversations":
                conv(("what is it?", "a picture."))} for i, p in enumerate(media[:2])]
    records.append({"id": "v", "video": "clip.mp4", "conversations": conv(("what happens?", "a video."))})
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    mixture = tmp_path / "mix.yaml"
    mixture.write_text("datasets: [{name: d, path: d.jsonl, media_root: media}]\n")
    first = ConversationDataset(mixture, _processor(), max_length=4096, num_frames=4)
    assert set(entries(cache_for(mixture))) == {str(p.resolve()) for p in media}
    again = ConversationDataset(mixture, _processor(), max_length=4096, num_frames=4)
    off = ConversationDataset(mixture, _processor(), max_length=4096, num_frames=4, size_cache=False)
    assert first.lengths == again.lengths == off.lengths


def test_runs_on_other_records_of_the_mixture_keep_each_others_entries(tmp_path: Path, media: list[Path]) -> None:
    """Another seed or weight samples other records: the cache grows instead of swapping its entries back and forth."""
    cache = cache_for(tmp_path / "mix.yaml")
    media_sizes(media[:1], cache)
    media_sizes(media[1:], cache)
    assert set(entries(cache)) == {str(p) for p in media}
    before = cache.stat().st_mtime_ns
    media_sizes(media, cache)
    assert cache.stat().st_mtime_ns == before
