"""The serving engine in-process: batched option scoring equals scoring each request alone, compatible jobs
share one forward pass, the admission limit, and the request parts that need no server (URL rules, SSE text)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_serve_support import EXAMPLES, questions

from tempflex.serve.errors import APIError
from tempflex.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def asker(saved_tiny):
    from tempflex.ask import Asker

    return Asker(saved_tiny)


def make_job(asker, item: dict, settings: ServeSettings, **request):
    from tempflex.serve import chat
    from tempflex.serve.protocol import ChatRequest

    url = "file://" + str(EXAMPLES / item["video"])
    body = ChatRequest.model_validate({"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": item["question"]}]}], **request})
    media = chat.decode_media(chat.media_specs(body, settings), settings, asker.default_frames)
    return chat.build_job(body, media, asker.processor, settings, time.monotonic() + 60)


def test_batched_scores_equal_single_and_compatible_jobs_share_a_pass(asker):
    from tempflex.serve.engine import Engine

    settings = ServeSettings(allowed_media_paths=(EXAMPLES,), max_batch=4)
    items = questions()[:6]
    jobs = [make_job(asker, item, settings, structured_outputs={"choice": item["options"]}) for item in items]
    free = make_job(asker, items[0], settings, max_tokens=3)
    engine = Engine(asker, settings, start=False)
    futures = [engine.submit(job) for job in jobs[:3]] + [engine.submit(free)]
    futures += [engine.submit(job) for job in jobs[3:]]
    engine.start()
    results = [f.result(timeout=120) for f in futures]
    engine.close()
    choice_results = results[:3] + results[4:]
    assert [r.batch_size for r in choice_results] == [4, 4, 4, 4, 2, 2]  # oldest first, up to max_batch
    assert results[3].batch_size == 1 and results[3].completion_tokens <= 3
    assert engine.batches == [4, 1, 2]
    for item, batched in zip(items, choice_results):
        alone = Engine(asker, settings)
        single = alone.submit(make_job(asker, item, settings, structured_outputs={"choice": item["options"]}))
        result = single.result(timeout=60)
        alone.close()
        assert result.batch_size == 1
        assert batched.option_logprobs == pytest.approx(result.option_logprobs, abs=1e-4)
        assert batched.choice == result.choice and batched.prompt_tokens == result.prompt_tokens


def test_admission_limit_and_tickets(asker):
    from tempflex.serve.engine import Engine

    engine = Engine(asker, ServeSettings(max_queue=2, retry_after=3), start=False)
    first, second = engine.admit(), engine.admit()
    with pytest.raises(APIError) as refused:
        engine.admit()
    assert refused.value.status == 429 and refused.value.headers() == {"Retry-After": "3"}
    first.release()
    first.release()  # idempotent: a second release lets nobody extra in
    third = engine.admit()
    with pytest.raises(APIError):
        engine.admit()
    second.release(), third.release()
    engine.close()
    with pytest.raises(APIError) as closed:
        engine.admit()
    assert closed.value.status == 503


def test_file_urls_follow_the_real_path(tmp_path):
    from tempflex.serve.media import allowed_file

    root = tmp_path / "root"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    (root / "inner").symlink_to(root / "a.mp4")
    (root / "outer").symlink_to(tmp_path / "b.mp4")
    settings = ServeSettings(allowed_media_paths=(root,))
    assert allowed_file(f"file://{root}/inner", settings, "p") == root / "a.mp4"
    (root / "x").mkdir()
    assert allowed_file(f"file://{root}/x/../a.mp4", settings, "p") == root / "a.mp4"  # `..` that stays inside
    assert allowed_file(f"file://localhost{root}/a.mp4", settings, "p") == root / "a.mp4"
    for url in (f"file://{root}/outer", f"file://{root}/../b.mp4", "file:///proc/self/status",
                f"file://other-host{root}/a.mp4", "file:relative.mp4", f"file://{root}"):
        with pytest.raises(APIError) as refused:
            allowed_file(url, settings, "p")
        assert refused.value.status == 400
    with pytest.raises(APIError, match="--allowed-media-path"):
        allowed_file(f"file://{root}/a.mp4", ServeSettings(), "p")


def test_settings_refuse_bad_limits(tmp_path):
    with pytest.raises(ValueError, match="max_frames"):
        ServeSettings(max_frames=0)
    with pytest.raises(ValueError, match="not a directory"):
        ServeSettings(allowed_media_paths=(Path(tmp_path / "missing"),))
    with pytest.raises(ValueError, match="api-key"):
        ServeSettings(api_key=" ")


def test_text_stream_holds_back_a_possible_stop_string():
    from tempflex.serve.generation import TextStream

    class Chars:  # a tokenizer whose tokens are characters
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)

    import torch

    sent: list[str] = []
    stream = TextStream(Chars(), ("END",), sent.append)
    stream.put(torch.tensor([[1]]))  # the prompt, skipped
    for ch in " hello EN":
        stream.put(torch.tensor([ord(ch)]))
    assert "".join(sent) == "hello "  # "EN" may start "END": held back
    stream.put(torch.tensor([ord("D")]))
    stream.put(torch.tensor([ord("x")]))
    stream.end()
    assert stream.stopped and stream.text == "hello "  # already sent: the space stays
    assert "".join(sent) == "hello "


def test_text_stream_matches_stops_before_stripping():
    import torch

    from tempflex.serve.generation import TextStream

    class Chars:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)

    sent: list[str] = []
    stream = TextStream(Chars(), ("\nAssistant:",), sent.append)
    stream.put(torch.tensor([[1]]))
    for ch in "\nAssistant: hi":
        stream.put(torch.tensor([ord(ch)]))
    stream.end()
    assert stream.stopped and stream.text == "" and sent == []


@pytest.mark.parametrize("args, words", [
    (["--allowed-media-path", "/nonexistent-root"], "is not a directory"),
    (["--model", "/nonexistent-model"], "not a saved TempFlex model"),
])
def test_cli_bad_input_is_one_line(args, words):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tempflex", "serve", "--port", "0", *args], check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and words in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in done.stderr
