"""SharePoint sites and document libraries (filled in next)."""

from __future__ import annotations

import threading
from typing import Any

from .common import Request, Response


class DriveService:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.workbooks: Any = None

    def reset(self) -> None:
        pass

    def handle(self, req: Request, path: str) -> Response | None:
        return None

    def download(self, req: Request, token: str) -> Response:
        raise NotImplementedError

    def upload_chunk(self, req: Request, token: str) -> Response:
        raise NotImplementedError
