"""OpenAI response bodies: ``chat.completion`` JSON and ``chat.completion.chunk`` server-sent events.

Beyond OpenAI's fields, ``usage.prompt_tokens_details.visual_tokens`` counts the visual tokens the prompt spent,
and a ``tempflex`` object carries the frames used (time and visual tokens each), the token budget's spending, the
options' log-probabilities, the seconds per stage and the batch the request ran in (see docs/serve.md).
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

from tempflex.serve.jobs import Result
from tempflex.serve.media import MediaItem

THUMBNAIL_HEIGHT = 96  # pixels: the web page's frame strip


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def usage(result: Result) -> dict:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "visual_tokens": result.visual_tokens}}


def extension(result: Result, media: list[MediaItem], thumbnails: list[str] | None) -> dict:
    decode = sum(m.seconds for m in media)
    return {"visual_tokens": result.visual_tokens, "frames": result.frames, "budget": result.budget,
            "option_logprobs": result.option_logprobs, "timings": {"decode": decode, **result.timings},
            "batch_size": result.batch_size, "thumbnails": thumbnails}


def logprobs(result: Result) -> dict | None:
    """OpenAI's logprobs of the chosen option's token, the options as its top_logprobs."""
    if result.option_logprobs is None:
        return None
    top = [{"token": o, "logprob": v, "bytes": list(o.encode())} for o, v in result.option_logprobs.items()]
    return {"content": [{"token": result.choice, "logprob": result.token_logprob,
                         "bytes": list(result.choice.encode()), "top_logprobs": top}]}


def completion(cid: str, model: str, result: Result, media: list[MediaItem], want_logprobs: bool,
               thumbnails: list[str] | None) -> dict:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": result.finish_reason,
                     "logprobs": logprobs(result) if want_logprobs else None}],
        "usage": usage(result),
        "tempflex": extension(result, media, thumbnails),
    }


def chunk(cid: str, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return sse(body)


def sse(body: dict) -> str:
    return "data: " + json.dumps(body) + "\n\n"


def thumbnails(result: Result, media: list[MediaItem]) -> list[str]:
    """JPEG data URLs of the frames that reached the LLM, THUMBNAIL_HEIGHT pixels high."""
    from PIL import Image

    out = []
    for frame in result.frames:
        item = media[frame["media"]]
        if item.kind == "video":
            image = Image.fromarray(item.data.frames[frame["index"]].numpy())
        else:
            image = item.data
        width = max(1, round(image.width * THUMBNAIL_HEIGHT / image.height))
        buffer = io.BytesIO()
        image.convert("RGB").resize((width, THUMBNAIL_HEIGHT)).save(buffer, format="JPEG", quality=80)
        out.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    return out
