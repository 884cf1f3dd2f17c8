"""Helpers of the serve tests (no tests here): a real ``python -m tempflex.serve`` process on a free port of
127.0.0.1, media files made on the spot, and raw HTTP for what the openai client hides."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
START_TIMEOUT = 300.0  # seconds for the server to load its model and open the port (the default model: ~1 min)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(model: Path | None, *args: str, log: Path) -> Iterator[str]:
    """A server process with ``args``; yields its base URL once /health answers, stops it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "tempflex.serve", "--port", str(port), *args]
    if model is not None:
        command += ["--model", str(model)]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start in {START_TIMEOUT} s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post(base: str, path: str, body: bytes | dict, key: str | None = None,
         headers: dict | None = None) -> tuple[int, dict, str]:
    """(status, headers, text) of a raw POST; errors are answers here, not exceptions."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def file_url(path: Path) -> str:
    return "file://" + str(Path(path).absolute())


def write_video(path: Path, frames: int, size: tuple[int, int] = (64, 64), fps: int = 8, noise: bool = False,
                gop: int = 12) -> Path:
    """An h264 mp4 of a moving square (or noise), ``size`` (H, W)."""
    import av

    rng = np.random.default_rng(0)
    height, width = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.codec_context.gop_size = gop
        for t in range(frames):
            if noise:
                image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            else:
                image = np.zeros((height, width, 3), dtype=np.uint8)
                x = (t * 4) % max(1, width - 16)
                image[height // 2 - 8 : height // 2 + 8, x : x + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(path)
    return path


def video_message(url: str, question: str, **video) -> list[dict]:
    return [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url, **video}},
                                         {"type": "text", "text": question}]}]


def questions() -> list[dict]:
    """The example videos' questions and options."""
    return [json.loads(line) for line in (EXAMPLES / "questions.jsonl").read_text().splitlines() if line.strip()]
