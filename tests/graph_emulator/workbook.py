"""Excel workbooks through Graph (filled in next)."""

from __future__ import annotations

import threading
from typing import Any


class WorkbookService:
    def __init__(self, lock: threading.RLock, drive: Any) -> None:
        self.lock = lock
        self.refused = False
        self.session_idle = 300.0

    def reset(self) -> None:
        self.refused = False

    def expire_sessions(self) -> None:
        pass
