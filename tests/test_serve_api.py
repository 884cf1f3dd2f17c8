"""`tempflex serve` as a client sees it: a real server process on 127.0.0.1 with a tiny saved model, driven by the
openai client (and raw HTTP where the client hides the wire): routes, content parts, choice scoring, sampling,
streaming, the media security rules and bad input."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import openai
import pytest
from test_serve_support import (
    EXAMPLES,
    data_url,
    file_url,
    post,
    questions,
    running_server,
    video_message,
    write_image,
)

KEY = "test-key"
QUESTION = "Which way does the white square move?"
OPTIONS = ["right", "up", "left", "down"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """The allowed media root: example videos, images, a text file named .mp4, a cut-off video, links out."""
    root = tmp_path_factory.mktemp("media")
    outside = tmp_path_factory.mktemp("outside")
    for item in questions():
        shutil.copy(EXAMPLES / item["video"], root / item["video"])
    write_image(root / "a.png", (48, 64), seed=1)
    write_image(root / "b.png", (64, 32), seed=2)
    (root / "notes.mp4").write_text("this is a text file, not a video\n")
    whole = (EXAMPLES / "object_direction.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(whole[: len(whole) * 6 // 10])
    shutil.copy(EXAMPLES / "object_direction.mp4", outside / "secret.mp4")
    os.symlink(outside / "secret.mp4", root / "link.mp4")
    (root / "sub").mkdir()
    return root


@pytest.fixture(scope="module")
def server(saved_tiny, media, tmp_path_factory) -> str:
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with running_server(saved_tiny, "--allowed-media-path", str(media), "--api-key", KEY,
                        "--allowed-media-domains", "127.0.0.1", "--served-model-name", "tiny", log=log) as base:
        yield base


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)


def ask_choice(client, url: str, question: str = QUESTION, options=OPTIONS, **extra):
    return client.chat.completions.create(model="tiny", messages=video_message(url, question),
                                          extra_body={"structured_outputs": {"choice": options}}, **extra)


def test_health_models_and_api_key(server, client):
    status, _, text = post(server, "/v1/chat/completions", {"model": "tiny", "messages": []})
    assert status == 401 and json.loads(text)["error"]["code"] == "invalid_api_key"
    assert [m.id for m in client.models.list().data] == ["tiny"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()


def test_choice_scores_options_like_ask(client, media, saved_tiny):
    from tempflex.ask import Asker, load_media

    reply = ask_choice(client, file_url(media / "object_direction.mp4"), logprobs=True)
    ext = reply.model_extra["tempflex"]
    expected = Asker(saved_tiny).ask(QUESTION, load_media(video=media / "object_direction.mp4", frames=8),
                                     options=OPTIONS)
    assert reply.choices[0].message.content == expected.choice
    assert reply.usage.prompt_tokens_details.model_extra["visual_tokens"] == expected.visual_tokens
    assert reply.usage.completion_tokens == 1
    assert len(ext["frames"]) == 8 and [f["time"] for f in ext["frames"]] == sorted(f["time"] for f in ext["frames"])
    assert sum(f["tokens"] for f in ext["frames"]) == expected.visual_tokens
    top = {t.token: t.logprob for t in reply.choices[0].logprobs.content[0].top_logprobs}
    assert top == pytest.approx(ext["option_logprobs"]) and max(top, key=top.get) == expected.choice
    guided = client.chat.completions.create(model="tiny", messages=video_message(
        file_url(media / "object_direction.mp4"), QUESTION), extra_body={"guided_choice": OPTIONS})
    assert guided.choices[0].message.content == expected.choice


def test_images_system_and_multi_turn(client, media):
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(media / "a.png", "image/png")}},
                                     {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": "A picture."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": file_url(media / "b.png")}},
                                     {"type": "text", "text": "Is this one the same?"}]},
    ]
    reply = client.chat.completions.create(model="tiny", messages=messages,
                                           extra_body={"structured_outputs": {"choice": ["yes", "no"]}})
    ext = reply.model_extra["tempflex"]
    assert reply.choices[0].message.content in ("yes", "no")
    assert [f["time"] for f in ext["frames"]] == [None, None]  # two images, in order
    assert ext["visual_tokens"] == sum(f["tokens"] for f in ext["frames"]) > 0


def test_free_generation_sampling_controls(client, media):
    messages = video_message(file_url(media / "counting.mp4"), "Describe the video.")
    greedy = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, extra_body={"min_tokens": 6})
    assert greedy.choices[0].finish_reason == "length" and greedy.usage.completion_tokens == 6
    again = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=6,
                                           extra_body={"min_tokens": 6})
    assert again.choices[0].message.content == greedy.choices[0].message.content
    sampling = {"max_tokens": 12, "temperature": 1.5, "top_p": 0.95, "extra_body": {"min_tokens": 12}}
    sampled = [client.chat.completions.create(model="tiny", messages=messages, seed=seed, **sampling)
               .choices[0].message.content for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    text = sampled[0]
    assert len(text) >= 4, text
    stop = text[len(text) // 2 :][:2]
    cut = client.chat.completions.create(model="tiny", messages=messages, seed=1, stop=[stop], **sampling)
    assert cut.choices[0].message.content == text[: text.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"


def test_streaming_matches_plain(server, client, media):
    messages = video_message(file_url(media / "counting.mp4"), "Describe the video.")
    sampling = {"max_tokens": 8, "temperature": 1.2, "seed": 5, "extra_body": {"min_tokens": 8}}
    plain = client.chat.completions.create(model="tiny", messages=messages, **sampling)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}, **sampling))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    status, headers, raw = post(server, "/v1/chat/completions", {
        "model": "tiny", "stream": True, "messages": video_message(file_url(media / "counting.mp4"), QUESTION),
        "structured_outputs": {"choice": OPTIONS}}, key=KEY)
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    answer = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert answer in OPTIONS


def test_frames_fps_and_budget(client, media):
    url = file_url(media / "event_order.mp4")
    four = client.chat.completions.create(model="tiny", messages=video_message(url, QUESTION, num_frames=4),
                                          max_tokens=2)
    assert len(four.model_extra["tempflex"]["frames"]) == 4
    by_kwargs = client.chat.completions.create(model="tiny", messages=video_message(url, QUESTION), max_tokens=2,
                                               extra_body={"mm_processor_kwargs": {"num_frames": 3}})
    assert len(by_kwargs.model_extra["tempflex"]["frames"]) == 3
    fps = client.chat.completions.create(model="tiny", messages=video_message(url, QUESTION, fps=2), max_tokens=2)
    times = [f["time"] for f in fps.model_extra["tempflex"]["frames"]]
    assert len(times) >= 2 and all(b - a == pytest.approx(0.5, abs=0.15) for a, b in pairwise(times))
    budgeted = client.chat.completions.create(
        model="tiny", messages=video_message(url, QUESTION),
        extra_body={"structured_outputs": {"choice": OPTIONS}, "mm_processor_kwargs": {"budget": 12, "reduce": "flux"}})
    ext = budgeted.model_extra["tempflex"]
    assert ext["budget"]["budget"] == 12 and ext["budget"]["total"] <= 12
    assert budgeted.usage.prompt_tokens_details.model_extra["visual_tokens"] == ext["budget"]["visual_tokens"]
    assert sum(f["tokens"] for f in ext["frames"]) == ext["budget"]["visual_tokens"]
    assert budgeted.choices[0].message.content in OPTIONS


@pytest.mark.parametrize("url, message", [
    ("file:///etc/hostname", "outside the allowed media roots"),
    ("file:///proc/self/environ", "outside the allowed media roots"),
    ("{root}/link.mp4", "outside the allowed media roots"),  # a symlink out of the root
    ("{root}/sub/../../{outside}", "outside the allowed media roots"),
    ("{root}/missing.mp4", "no such media file"),
    ("http://example.com/v.mp4", "refused"),
    ("https://localhost/v.mp4", "refused"),  # only the host named, 127.0.0.1
    ("ftp://example.com/v.mp4", "unsupported media URL scheme"),
])
def test_media_urls_refused(client, media, url, message):
    outside = Path(os.readlink(media / "link.mp4"))
    url = url.format(root="file://" + str(media), outside=f"{outside.parent.name}/{outside.name}")
    with pytest.raises(openai.BadRequestError, match=message):
        ask_choice(client, url)
    assert ask_choice(client, file_url(media / "object_direction.mp4")).choices[0].message.content in OPTIONS


def test_http_media_from_an_allowed_host_without_redirects(client, media):
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(media)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        fetched = ask_choice(client, base + "/object_direction.mp4")
        local = ask_choice(client, file_url(media / "object_direction.mp4"))
        assert fetched.model_extra["tempflex"]["option_logprobs"] == local.model_extra["tempflex"]["option_logprobs"]
        with pytest.raises(openai.BadRequestError, match="cannot fetch"):
            ask_choice(client, base + "/sub")  # the handler redirects to /sub/: not followed
    finally:
        httpd.shutdown()


def test_bad_requests_name_the_problem_and_the_server_lives_on(server, client, media):
    cases = [
        (lambda: ask_choice(client, file_url(media / "notes.mp4")), openai.BadRequestError, "notes.mp4"),
        (lambda: ask_choice(client, file_url(media / "cut.mp4")), openai.BadRequestError, "cut.mp4"),
        (lambda: ask_choice(client, file_url(media / "counting.mp4"), question="<video> how many?"),
         openai.BadRequestError, "placeholder"),
        (lambda: ask_choice(client, file_url(media / "counting.mp4"), options=["one", "one"]),
         openai.BadRequestError, "cannot be told apart"),
        (lambda: client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}]),
         openai.NotFoundError, "does not exist"),
        (lambda: client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": "x"}}]}]), openai.UnprocessableEntityError, "messages.0"),
        (lambda: ask_choice(client, "data:video/mp4;base64,@@@@"), openai.BadRequestError, "base64"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words):
            call()
    status, _, text = post(server, "/v1/chat/completions", b'{"model": "tiny", "messages": [', key=KEY)
    assert status == 400 and "malformed JSON" in json.loads(text)["error"]["message"]
    status, _, text = post(server, "/v1/nothing", {}, key=KEY)
    assert status == 404 and set(json.loads(text)["error"]) == {"message", "type", "param", "code"}
    assert ask_choice(client, file_url(media / "object_direction.mp4")).choices[0].message.content in OPTIONS


def test_sixteen_concurrent_clients(client, media):
    items = (questions() * 2)[:16]

    def one(item):
        return ask_choice(client, file_url(media / item["video"]), item["question"], item["options"])

    alone = {item["video"]: one(item).model_extra["tempflex"]["option_logprobs"] for item in items[:10]}
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(one, items))
    for item, reply in zip(items, replies):
        scores = reply.model_extra["tempflex"]["option_logprobs"]
        assert scores == pytest.approx(alone[item["video"]], abs=1e-4)
        assert reply.choices[0].message.content == max(scores, key=scores.get)


def test_a_client_leaving_a_stream_frees_its_place(server, client):
    import http.client
    import time
    import urllib.request

    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    connection.request("POST", "/v1/chat/completions", json.dumps({
        "model": "tiny", "stream": True, "max_tokens": 1000, "min_tokens": 1000,
        "messages": [{"role": "user", "content": "Tell a long story."}]}),
        {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.status == 200 and response.read(6) == b"data: "
    connection.close()  # gone after the first event
    for _ in range(200):
        with urllib.request.urlopen(server + "/health") as health:
            if json.loads(health.read())["inside"] == 0:
                break
        time.sleep(0.1)
    else:
        pytest.fail("the stream's place was not freed")
    assert client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).usage.completion_tokens <= 2
