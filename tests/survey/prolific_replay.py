"""Prolific's API answered by recordings (tests/survey/recordings/prolific): the real client,
a replaying transport. Shared by the Prolific tests and the staff-permission tests."""

import json
from pathlib import Path

import requests
from requests.adapters import BaseAdapter

from survey import prolific

RECORDINGS = Path(__file__).parent / "recordings" / "prolific"
SUBMISSION = "64f1c0a2b3d4e5f6a7b8c9d0"
PID = "5f0e1d2c3b4a596877665544"
STUDY_ID = "64f1b000a1b2c3d4e5f60718"
TOKEN = "test-token-123"


class ReplayAdapter(BaseAdapter):
    """Answers each request with the next recording, after checking method and path."""

    def __init__(self, *names: str) -> None:
        super().__init__()
        self.queue = [json.loads((RECORDINGS / f"{n}.json").read_text()) for n in names]
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.sent.append(request)
        assert self.queue, f"unexpected request {request.method} {request.url}"
        recording = self.queue.pop(0)
        expected = recording["request"]
        path = request.path_url
        assert (request.method, path) == (expected["method"], expected["path"]), (
            f"sent {request.method} {path}, recording is for {expected}"
        )
        answer = recording["response"]
        response = requests.Response()
        response.status_code = answer["status"]
        response.headers.update(answer["headers"])
        body = answer["body"]
        response._content = b"" if body is None else json.dumps(body).encode()
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass

    def body(self, index: int) -> dict:
        return json.loads(self.sent[index].body)


def client_for(adapter: ReplayAdapter, token: str = TOKEN, sleeps: list | None = None):
    session = requests.Session()
    session.mount("https://", adapter)
    return prolific.ProlificClient(
        token=token,
        base_url="https://api.prolific.com/api/v1/",
        session=session,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )
