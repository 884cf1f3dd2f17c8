"""`tempflex serve` with the default model tempflex-tiny (Gemma3-270M from its wheel): example questions answered
with one of their options from 16 frames, concurrent (batched) requests equal to sequential ones, and a streamed
free answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from test_serve_support import EXAMPLES, file_url, questions, running_server, video_message

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with running_server(None, "--allowed-media-path", str(EXAMPLES), log=log) as base:
        yield openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=600)


def choice(client, item: dict):
    return client.chat.completions.create(
        model="tempflex-tiny", messages=video_message(file_url(EXAMPLES / item["video"]), item["question"]),
        extra_body={"structured_outputs": {"choice": item["options"]}})


def test_default_model_serves_the_examples(client):
    items = questions()[:4]
    alone = [choice(client, item) for item in items]
    for item, reply in zip(items, alone):
        ext = reply.model_extra["tempflex"]
        assert reply.choices[0].message.content in item["options"]
        assert len(ext["frames"]) == 16 and ext["visual_tokens"] == 64  # 16 frames x 4 tokens
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda item: choice(client, item), items))
    for a, b in zip(alone, together):
        assert b.choices[0].message.content == a.choices[0].message.content
        assert b.model_extra["tempflex"]["option_logprobs"] == pytest.approx(
            a.model_extra["tempflex"]["option_logprobs"], abs=1e-3)
    stream = client.chat.completions.create(
        model="tempflex-tiny", messages=video_message(file_url(EXAMPLES / items[0]["video"]), "What happens?"),
        max_tokens=8, stream=True)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
