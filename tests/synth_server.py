"""A scripted OpenAI-compatible chat server on 127.0.0.1 for the synthesis tests (a real HTTP server, in a thread).

A script maps a key (a string the test put in the prompt, e.g. the video title) to the list of steps that key's
successive requests get: ``Reply(text)``, ``Status(code, headers)``, ``Reply(text, delay=s)`` (slow) or ``Raw(body)`` (a 200 with
any body). Requests
whose prompt matches no key get ``default`` (a step or None: a valid answer). Every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIMS = (
    "Temporal Reasoning",
    "Scene Description",
    "Count and Quantity",
    "Camera Movement Direction",
    "Binary Questions",
)


def valid_answer(tag: str = "clip", pairs: int = 5, fenced: bool = False) -> str:
    """A valid figure-6 answer (``pairs`` per kind), optionally in a ```json fence, dimensions in mixed case."""

    def qa(kind: str) -> list[dict[str, str]]:
        return [
            {"question": f"{tag} {kind} question {i}?", "answer": f"{tag} {kind} answer {i}.", "dimension": DIMS[i % 5].lower() if i % 2 else DIMS[i % 5]}
            for i in range(pairs)
        ]  # fmt: skip

    body = json.dumps(
        {"description": f"A description of {tag}.", "vision_qa": qa("v"), "vision_text_qa": qa("vt")}
    )
    return f"```json\n{body}\n```" if fenced else body


@dataclass
class Reply:
    text: str
    delay: float = 0.0  # seconds before answering (beyond the client's timeout: a timeout)


@dataclass
class Status:
    code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Raw:
    """An HTTP 200 whose body is given as it is (cut-off JSON, empty, HTML)."""

    body: bytes
    content_type: str = "application/json"


@dataclass
class Seen:
    key: str | None
    body: dict[str, Any]
    time: float

    @property
    def image_parts(self) -> int:
        user = next(m for m in self.body["messages"] if m["role"] == "user")
        return sum(1 for part in user["content"] if part.get("type") == "image_url")


class ScriptedServer:
    def __init__(
        self, script: dict[str, list[Reply | Status]] | None = None, default: Reply | None = None
    ) -> None:
        self.script = {key: list(steps) for key, steps in (script or {}).items()}
        self.default = default
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:  # noqa: PYI034 - py3.10 has no typing.Self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def for_key(self, key: str) -> list[Seen]:
        return [seen for seen in self.requests if seen.key == key]

    def next_step(self, body: dict[str, Any]) -> tuple[str | None, Reply | Status]:
        user = next(m for m in body["messages"] if m["role"] == "user")["content"]
        text = user if isinstance(user, str) else user[0].get("text", "")  # the text part, with the metadata
        title = re.search(r"Video title: (\S+)", text)
        with self._lock:
            key = next((k for k in self.script if k in text), title.group(1) if title else None)
            self.requests.append(Seen(key, body, time.monotonic()))
            steps = self.script.get(key, []) if key in self.script else []
            step = steps.pop(0) if steps else (self.default or Reply(valid_answer(key or "clip")))
        return key, step

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                _, step = server.next_step(body)
                try:
                    self._answer(step, body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def _answer(self, step: Reply | Status | Raw, body: dict[str, Any]) -> None:
                if isinstance(step, Raw):
                    self._send(200, step.body, {}, step.content_type)
                    return
                if isinstance(step, Status):
                    payload = json.dumps(
                        {"error": {"message": f"scripted {step.code}", "type": "test"}}
                    ).encode()
                    self._send(step.code, payload, step.headers)
                    return
                time.sleep(step.delay)
                payload = json.dumps({
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": step.text}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
                }).encode()  # fmt: skip
                self._send(200, payload, {})

            def _send(self, code: int, payload: bytes, headers: dict[str, str],
                      content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler
