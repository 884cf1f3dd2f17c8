"""Every limit of `tempflex serve`, each tripped on a real server process started with small limits; after each
refusal the next good request is answered."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from test_serve_support import (
    EXAMPLES,
    data_url,
    file_url,
    post,
    running_server,
    video_message,
    write_image,
    write_video,
)

LIMITS = ["--max-body-bytes", "200000", "--max-media-items", "2", "--max-frames", "8", "--max-pixels", "100000",
          "--max-video-seconds", "5", "--max-video-bytes", "20000", "--max-decode-seconds", "0.00001",
          "--request-timeout", "1", "--max-queue", "1", "--max-tokens", "3600", "--served-model-name", "tiny"]
GOOD = {"model": "tiny", "messages": [{"role": "user", "content": "Is the sky blue?"}],
        "structured_outputs": {"choice": ["yes", "no"]}}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_image(root / "big.png", (300, 300))  # ~270 KB of noise: over the body limit as a data URL
    write_image(root / "wide.png", (300, 400))  # 120,000 pixels
    for name in ("a", "b", "c"):
        write_image(root / f"{name}.png", (32, 32))
    write_video(root / "wide.mp4", 8, size=(304, 400))  # 121,600 pixels a frame
    write_video(root / "long.mp4", 48, size=(32, 32), fps=4)  # 12 s
    write_video(root / "heavy.mp4", 24, size=(128, 128), noise=True)  # 3 s of noise: more than 20,000 bytes
    shutil.copy(EXAMPLES / "object_direction.mp4", root / "ok.mp4")
    assert (root / "heavy.mp4").stat().st_size > 20000
    return root


@pytest.fixture(scope="module")
def server(saved_tiny, media, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with running_server(saved_tiny, "--allowed-media-path", str(media), *LIMITS, log=log) as base:
        yield base


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=60)


def good_request_works(client) -> None:
    reply = client.chat.completions.create(model="tiny", messages=GOOD["messages"],
                                           extra_body={"structured_outputs": GOOD["structured_outputs"]})
    assert reply.choices[0].message.content in ("yes", "no")


def images(*urls: str) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "What is it?"}]}]


@pytest.mark.parametrize("messages, error, words", [
    (lambda m: images(data_url(m / "big.png", "image/png")), openai.APIStatusError, "--max-body-bytes"),
    (lambda m: images(*(file_url(m / f"{n}.png") for n in "abc")), openai.BadRequestError, "--max-media-items"),
    (lambda m: video_message(file_url(m / "ok.mp4"), "q", num_frames=9), openai.BadRequestError, "--max-frames"),
    (lambda m: images(file_url(m / "wide.png")), openai.BadRequestError, "--max-pixels"),
    (lambda m: video_message(file_url(m / "wide.mp4"), "q"), openai.BadRequestError, "--max-pixels"),
    (lambda m: video_message(file_url(m / "long.mp4"), "q"), openai.BadRequestError, "--max-video-seconds"),
    (lambda m: video_message(file_url(m / "heavy.mp4"), "q"), openai.APIStatusError, "--max-video-bytes"),
    (lambda m: video_message(file_url(m / "ok.mp4"), "q"), openai.UnprocessableEntityError, "--max-decode-seconds"),
])
def test_each_limit_refuses_then_serves(client, media, messages, error, words):
    with pytest.raises(error, match=words) as refused:
        client.chat.completions.create(model="tiny", messages=messages(media), max_tokens=2)
    assert refused.value.status_code in (400, 413, 422)
    if "bytes" in words:
        assert refused.value.status_code == 413
    good_request_works(client)


def test_body_limit_by_declared_length(server):
    status, _, text = post(server, "/v1/chat/completions", b"{" + b" " * 200001 + b"}")
    assert status == 413 and json.loads(text)["error"]["code"] == "body_too_large"


def test_token_limit(client):
    with pytest.raises(openai.BadRequestError, match="--max-tokens"):
        client.chat.completions.create(model="tiny", messages=GOOD["messages"], max_tokens=5000)


def test_request_timeout_and_queue(client, server):
    long = {"model": "tiny", "messages": GOOD["messages"], "max_tokens": 3500, "min_tokens": 3500}

    def send(_):
        return post(server, "/v1/chat/completions", long)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    statuses = sorted(status for status, _, _ in answers)
    assert 504 in statuses and 429 in statuses and set(statuses) <= {429, 504}, statuses
    for status, headers, text in answers:
        error = json.loads(text)["error"]
        if status == 429:
            assert headers["retry-after"] == "1" and "--max-queue" in error["message"]
        else:
            assert "--request-timeout" in error["message"]
    good_request_works(client)
