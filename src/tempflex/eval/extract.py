"""The answer-reading rules of lmms-eval's video tasks, reimplemented (same results, including their quirks).

- ``first_capital_letter``: Video-MME and MLVU (``extract_characters_regex``): strip answer prefixes, then the
  first of A-D anywhere in the text. Quirks kept: case-sensitive (``"b"`` reads as nothing, so it is wrong), the
  first capital wins (``"Based on the video, C"`` reads as B), and two pairs of its prefixes are glued together by a
  missing comma, so ``"Best option: C"`` is not stripped and reads as B (from "Best"); more than ten words without
  a letter read as nothing.
- ``mvbench_letter``: MVBench's ``mcq_acc``: ``"B. text"`` gives B, else punctuation is dropped and the first
  standalone letter A-E of the lower-cased text (``"(b)"`` gives B), else the whole normalised text.
- ``lvb_letter``: LongVideoBench: the same as the first with all eight prefixes and A-E; nothing read: a guess.
- ``mmmu_letter``: NExT-QA's multiple choice (MMMU's parser): "(B)", then "B ", then "B.", then an option's text
  in a long answer; several: the last one; nothing: a guess.
Guesses are seeded by the question id, so a rerun scores the same.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_PREFIXES_GLUED = (  # as lmms-eval's Video-MME/MLVU list them: two adjacent literals concatenate
    "The best answer is", "The correct answer is", "The answer is", "The answer",
    "The best option isThe correct option is", "Best answer:Best option:",
)
_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
             "The correct option is", "Best answer:", "Best option:")


def _strip_prefixes(text: str, prefixes: Sequence[str]) -> str:
    text = text.strip()
    for prefix in prefixes:
        text = text.replace(prefix, "")
    return text


def first_capital_letter(output: str, letters: str = "ABCD") -> str:
    """Video-MME / MLVU: the first of ``letters`` in the output after its prefixes, or ""."""
    text = _strip_prefixes(output, _PREFIXES_GLUED)
    pattern = f"[{letters}]"
    if len(text.split()) > 10 and not re.search(pattern, text):
        return ""
    match = re.search(pattern, text)
    return match[0] if match else ""


def guess(question_id: str, choices: Sequence[str]) -> str:
    return random.Random(question_id).choice(list(choices))


def lvb_letter(output: str, choices: Sequence[str], question_id: str) -> tuple[str, bool]:
    """LongVideoBench: (letter, read); a seeded guess among ``choices`` when nothing is read."""
    text = _strip_prefixes(output, _PREFIXES)
    if len(text.split()) > 10 and not re.search("[ABCDE]", text):
        return guess(question_id, choices), False
    match = re.search("[ABCDE]", text)
    return (match[0], True) if match else (guess(question_id, choices), False)


_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUM = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_NUM.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def mvbench_letter(output: str) -> str:
    """MVBench's normalisation of an answer or a prediction (a letter A-E when one is found)."""
    match = re.match(r"^([A-E])\.\s*(.+)$", output.strip(), re.IGNORECASE)
    if match:
        return match.group(1).upper()
    text = _punctuation(output.replace("\n", " ").replace("\t", " ").strip())
    text = text.strip("'").strip('"').strip(")").strip("(").strip().lower()
    letter = re.search(r"\b([A-E])\b", text, re.IGNORECASE)
    return letter.group(1).upper() if letter else text


def mmmu_letter(output: str, options: Sequence[str], question_id: str) -> tuple[str, bool]:
    """NExT-QA multiple choice: (letter, read) by MMMU's rules; a seeded guess when nothing is read."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    for char in (",", ".", "!", "?", ";", ":", "'"):
        output = output.strip(char)
    text = " " + output + " "
    by_letter, bracketed = True, False
    found = [c for c in letters if f"({c})" in text]
    bracketed = bool(found)
    if not found:
        found = [c for c in letters if f"{c} " in text]
    if not found:
        found = [c for c in letters if f"{c}." in text]
    if not found and len(text.split()) > 5:
        found = [c for c, o in zip(letters, options) if o.lower() in text.lower()]
        by_letter = False
    if not found:
        return guess(question_id, letters), False
    if len(found) == 1:
        return found[0], True
    if by_letter:
        key = (lambda c: text.rfind(f"({c})")) if bracketed else (lambda c: text.rfind(f" {c} "))
    else:
        key = lambda c: text.lower().rfind(options[letters.index(c)].lower())
    positions = [key(c) for c in found]
    return found[positions.index(max(positions))], True


def yes_no(output: str) -> str:
    """TempCompass yes/no: "yes" or "no" if the output starts with it (any case), else ""."""
    text = output.lower()
    return "yes" if text.startswith("yes") else "no" if text.startswith("no") else ""


def tempcompass_choice(output: str, answer: str) -> tuple[str, bool | None]:
    """TempCompass multiple choice (answer "B. text"): (read, correct); correct None when no rule matched (its
    release then asks a GPT judge, which is not available offline: such answers count as wrong)."""
    if output == answer:
        return answer[0], True
    if output in ("A", "B", "C", "D"):
        return output, output == answer[0]
    for close in (".", ")"):
        if any(output.startswith(f"{c}{close}") for c in "ABCD"):
            letter = output.split(close)[0]
            return letter, letter == answer[0]
    return "", None


def tempcompass_caption(output: str, question: str, answer: str) -> tuple[str, bool | None]:
    """TempCompass caption matching (lines "Sentence A: ...", answer "Sentence A: ..."): (read, correct)."""
    lines = question.split("\n")[1:]
    sentences = [line.split(": ")[1] for line in lines if ": " in line]
    labels = [line.split(": ")[0] for line in lines if ": " in line]
    labels += [lab.replace("Sentence ", "").replace("Option ", "").replace("Caption ", "") for lab in labels]
    read = None
    for line in lines:
        if line == output:
            read = line
    for sentence in sentences:
        if sentence == output or (") " in output and sentence == output.split(") ")[1]):
            read = sentence
    for label in labels:
        if label == output or label == output.replace(".", ""):
            read = label
    if read is None:
        return "", None
    head = answer.split(": ")[0]
    ok = read in (answer, answer.split(":")[0], answer.split(": ")[1] if ": " in answer else None,
                  head.split()[1] if len(head.split()) > 1 else None)
    return read, ok
