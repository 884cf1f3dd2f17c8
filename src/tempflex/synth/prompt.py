"""The paper's prompt (appendix A.2, figures 6 and 7) and the chat request built from it.

The text follows figure 6 closely; two changes: the output section asks for one strict JSON object with named
keys (figure 6 only says "a Python dictionary string", which gives every answer a different shape), and the
metadata and the grids' time spans are stated after the instructions. One request per video: the text, then each
3x3 grid as an ``image_url`` part (a base64 JPEG data URL).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tempflex.synth.manifest import VideoItem
    from tempflex.synth.grids import FrameGrid

# Figure 7's 15 dimensions: (name, explanation, example question, example answer).
TASKS: tuple[tuple[str, str, str, str], ...] = (
    ("Temporal Reasoning", "Designed to assess reasoning about temporal relationships between actions/events. Questions involve previous, present, or next actions.", "What activity did the child perform just before deciding to sit on the baby chair?", "The child was playing with a toy."),
    ("Spatial Awareness", "Tests the ability to perceive spatial relationships between observed instances in a video scene.", "Where were the objects located in relation to the main character before they moved them?", "The objects were initially placed on the left side of the table next to the window."),
    ("Causal Reasoning", "Focuses on explaining actions/events, determining intentions of actions or causes for subsequent events.", "What prompted the person to run towards the door suddenly?", "The person heard a loud noise coming from outside the door."),
    ("Motion Analysis", "Involves discerning variations in speed, including absolute and relative speeds.", "How did the speed of the car change from the beginning to the end of the chase scene?", "The car accelerated rapidly at first but slowed down as it approached the crowded intersection."),
    ("Binary Questions", "Involves yes or no questions related to the video content.", "Was there a noticeable change in lighting before the action scene started?", "No"),
    ("Count and Quantity", "Tests the ability to count instances of objects, people, actions, and to distinguish between old and new elements in a scene.", "How many books did the child pick up from the floor throughout the video?", "The child picked up three books from the floor."),
    ("Narrative Understanding", "Challenges the ability to interpret the plot in the video.", "What is the underlying reason for the character's behavior throughout the video?", "The character is trying to find a hidden object that is crucial to the story."),
    ("Object Description", "Assesses the ability to describe attributes of objects, like their appearance and function.", "Describe the appearance and possible function of the object placed next to the lamp.", "The object is a spherical device with a digital screen, likely used as an alarm clock."),
    ("Sequence Ordering", "Challenges recognition of the temporal sequence of activities in videos.", "Arrange the following events in the order they occurred: the child playing with the toy, the child sitting on the chair, the child picking up the book.", "The child was playing with the toy, then picked up the book, and finally sat on the chair."),
    ("Fine-grain Action Recognition", "Creates questions challenging comprehension of subtle actions.", "What specific gestures did the character use to communicate with the other person?", "The character used hand signals and nodding to communicate without speaking."),
    ("Human Activity and Appearance Description", "Involves describing actions or attributes of people, such as their activities and appearances.", "Describe the attire and actions of the main character during the garden scene.", "The main character is wearing a blue shirt and jeans, and they are watering the plants."),
    ("Attribute Evolution", "Centers on how attributes of objects or the entire video change over time, like size, shape, color, and more.", "How did the color of the sky change from the beginning to the end of the scene?", "The sky changed from a bright blue to a deep orange as the sun set."),
    ("Camera Movement Direction", "Focuses on the direction of camera movement.", "In which direction did the camera pan during the opening scene?", "The camera panned from left to right during the opening scene."),
    ("Object Movement Direction", "Emphasizes perception of object movement direction.", "Which direction did the car move when entering the frame?", "The car moved from the right to the left when entering the frame."),
    ("Scene Description", "Assesses the ability to describe the major scene of the video, like where it takes place and the overall environment.", "Describe the setting and atmosphere of the final battle scene.", "The final battle took place in a dimly lit warehouse filled with crates, creating a tense and gritty atmosphere."),
)  # fmt: skip
DIMENSIONS: tuple[str, ...] = tuple(task[0] for task in TASKS)

_SYSTEM = """You are an AI assistant tasked with generating questions and answers about video content to create a video instruction tuning dataset.

### TASK
1. Users will provide multiple stitched images, each containing 9 frames. These frames are extracted from the original video at a frame rate of 1 fps and are arranged from left to right and top to bottom in tic-tac-toe style (3x3). The order of the squares is as follows: the first row from left to right represents 1, 2, 3; the second row from left to right represents 4, 5, 6; and the third row from left to right represents 7, 8, 9. Each row of images is sequentially coherent in terms of time from left to right. Multiple stitched images are also coherent over time. For example, the 9 frames in the first stitched image represent frames from 0 to 8 seconds, while the 9 frames in the second stitched image represent frames from 9 to 17 seconds. Please note that any white images within the stitched images are meaningless and can be ignored.
2. Users will also provide 1. ASR text corresponding to the video; 2. Activities happening in the video; 3. Objects / Props that appear in the video; 4. Video brief summary;
3. Generate a detailed and accurate description of a video based on multiple stitched images and clip captions provided. Instructions for writing the detailed description: Focus on describing key visual details such as appearance, motion, sequence of actions, objects involved, and interactions between elements in the video. Leave out any descriptions about the atmosphere, mood, style, aesthetics, proficiency, or emotional tone of the video. Make sure the description is no more than 20 sentences. Combine and organize information from all frames into one clear and detailed description, removing any repeated or conflicting details. Emphasize important points like the order of events, appearance and actions of people or objects, and any significant changes or movements.
4. Generate two different types of VQA: vqa-type1: VQA based solely on video content; vqa-type2: VQA combining video content and video ASR text information. All question-answer pairs should be faithful to the content of the video description and developed from different dimensions to promote comprehensive understanding of the video.

Here are some question dimensions and their explanations and exampled question-answer pairs for reference:
{task_definitions}

### Guidelines For Question-Answer Pairs Generation:
- Read the stitched frames provided carefully, paying attention to the content, such as the scene where the video takes place, the main characters and their behaviors, and the development of the events.
- Generate 5 vqa-type1 question-answer pairs: VQA based solely on (1) Stitched images and (2) Props that appear in the video, neither the Answer nor the Question should contain any inferences that require ASR text or Activities.
- Generate 5 vqa-type2 question-answer pairs: VQA combining (1) Stitched images; (2) ASR text corresponding to the video; (3) Activities happening in the video; (4) Props that appear in the video; (5) Video brief summary. This means you can use all the information provided by the user to generate the VQA.
- All question-answer pairs should be faithful to the content of the video description and developed from different dimensions to promote comprehensive understanding of the video. The question-answer pairs should cover as many question dimensions and not deviate from the content of the video.
- Each VQA type generate 5 question-answer pairs, total 10 question-answer pairs. You need to select the most suitable 5 dimensions out of 15 question dimensions for this video, and generate questions based on these dimensions.
- How to choose question dimensions: Evaluate which dimensions are suitable for generating questions based on the visual content of the video. Ensure the accuracy of the generated Questions and Answers as much as possible. Prioritize selecting dimensions where both Questions and Answers are clearly demonstrated in the video. Avoid choosing dimensions that cannot be directly displayed by the video visuals and require further inference.
- The question should be objective and avoid using subjective words like infer, suggest, likely, indicate, convey, and so on.
- The questions must be complex and require at least 2 steps of thinking to reach the correct answer. A complex question does not mean a question asking combination of elements.
- Questions from different dimensions should be as distinct as possible, meaning both the questions and answers need to be diverse, rather than repeatedly asking about a specific action from different dimensions.

### Output Format:
Reply with one JSON object and nothing else:
{{"description": "<the detailed description>",
 "vision_qa": [{{"question": "...", "answer": "...", "dimension": "<one of the 15 dimension names>"}}, ... exactly 5 ...],
 "vision_text_qa": [{{"question": "...", "answer": "...", "dimension": "<one of the 15 dimension names>"}}, ... exactly 5 ...]}}
vision_qa holds the 5 vqa-type1 pairs, vision_text_qa the 5 vqa-type2 pairs."""

REPAIR = (
    "Your previous answer could not be used: {error}. Reply with the corrected JSON object only, with a "
    '"description", exactly 5 "vision_qa" and exactly 5 "vision_text_qa" pairs, each with a "question", an '
    '"answer" and a "dimension" from the list.'
)


def task_definitions() -> str:
    """Figure 7's dimension list, one block per dimension."""
    return "\n".join(f"# {n}: {d}\n## Question-1: {q}\n## Answer-1: {a}" for n, d, q, a in TASKS)


def system_prompt() -> str:
    return _SYSTEM.format(task_definitions=task_definitions())


def user_text(item: VideoItem, grids: Sequence[FrameGrid]) -> str:
    """The per-video text: metadata (``N/A`` when absent) and the time span of every grid."""
    spans = "\n".join(
        f"- Stitched image {i}: {g.num_frames} frames, {g.start:.1f} s to {g.end:.1f} s"
        for i, g in enumerate(grids, 1)
    )
    return (
        f"Video title: {item.title or 'N/A'}\n"
        f"1. ASR text: {item.asr or 'N/A'}\n"
        f"2. Activities: {'; '.join(item.activities) or 'N/A'}\n"
        f"3. Objects / Props: {'; '.join(item.props) or 'N/A'}\n"
        f"4. Video brief summary: {item.summary or 'N/A'}\n"
        f"The {len(grids)} stitched image(s) below, in time order:\n{spans}"
    )


def image_part(grid: FrameGrid, quality: int = 90) -> dict[str, Any]:
    """One grid as an OpenAI ``image_url`` content part (base64 JPEG)."""
    buffer = io.BytesIO()
    grid.image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}"}}


def build_messages(item: VideoItem, grids: Sequence[FrameGrid]) -> list[dict[str, Any]]:
    """The chat request of one video: the figure-6 system prompt, then the metadata text and one part per grid."""
    content: list[dict[str, Any]] = [{"type": "text", "text": user_text(item, grids)}]
    content += [image_part(grid) for grid in grids]
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": content}]


def repair_messages(messages: list[dict[str, Any]], answer: str | None, error: str) -> list[dict[str, Any]]:
    """The follow-up request after an invalid answer: the same conversation, the answer, and the error."""
    return [
        *messages,
        {"role": "assistant", "content": answer or ""},
        {"role": "user", "content": REPAIR.format(error=error)},
    ]
