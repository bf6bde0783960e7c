"""What the sender raises about a command itself (WeChat's errors are in wechat.apierrors)."""

from __future__ import annotations


class NotSendable(Exception):
    """The command cannot become a WeChat message (e.g. an image with neither id nor asset)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
