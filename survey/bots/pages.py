"""What a bot reads from a participant page: form fields, labels, images, instructions."""

from __future__ import annotations

import re
from html.parser import HTMLParser

VOID_TAGS = {"input", "img", "br", "hr", "meta", "link", "source", "area", "wbr", "col"}


class PageParser(HTMLParser):
    """What a bot needs from a participant page: form fields, labels, images, instructions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inputs: list[dict[str, str]] = []
        self.label_text: dict[str, str] = {}  # label for= -> its text
        self.query_image: str | None = None
        self.candidates: list[tuple[int, str]] = []  # (photo number, image URL) as shown
        self.texts: dict[str, str] = {}  # id -> text of elements with these ids
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._label_for: str | None = None
        self._label_buffer: list[str] = []
        self._candidate_photo: int | None = None
        self._watched = {"attention", "completion-code"}
        self._buffers: dict[str, list[str]] = {}

    def _inside(self, tag: str, cls: str) -> bool:
        return any(t == tag and cls in a.get("class", "").split() for t, a in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input":
            self.inputs.append(a)
            if self._inside("label", "candidate") and a.get("name") == "selected":
                self._candidate_photo = int(a["value"])
        elif tag == "img":
            if self._inside("figure", "query"):
                self.query_image = a.get("src")
            elif self._inside("label", "candidate") and self._candidate_photo is not None:
                self.candidates.append((self._candidate_photo, a.get("src", "")))
        if tag in VOID_TAGS:
            return
        self._stack.append((tag, a))
        if tag == "label":
            self._label_for, self._label_buffer = a.get("for"), []
        if a.get("id") in self._watched:
            self._buffers[a["id"]] = []

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, a = self._stack.pop()
            if a.get("id") in self._buffers:
                self.texts[a["id"]] = " ".join("".join(self._buffers.pop(a["id"])).split())
            if open_tag == "label":
                if self._label_for:
                    self.label_text[self._label_for] = " ".join("".join(self._label_buffer).split())
                self._label_for = None
                self._candidate_photo = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._label_for is not None:
            self._label_buffer.append(data)
        for buffer in self._buffers.values():
            buffer.append(data)

    def hidden_fields(self) -> dict[str, str]:
        return {i["name"]: i.get("value", "") for i in self.inputs if i.get("type") == "hidden"}

    def options(self, name: str) -> list[dict[str, str]]:
        return [i for i in self.inputs if i.get("name") == name]


def page_parse(html: str) -> PageParser:
    """A participant page's HTML, read."""
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


ATTENTION_RE = re.compile(r"select photo (\d+) only and answer [“\"](.+?)[”\"]")
