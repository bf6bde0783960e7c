"""Send commands into WeChat's message bodies, resolving images named by asset."""

from __future__ import annotations

import msgspec

from libs.common.media_client import MediaClient
from libs.common.schemas import (
    SendCommand,
    SendImage,
    SendLink,
    SendMiniProgramPage,
    SendText,
)
from libs.common.wechat import api
from services.sender.errors import NotSendable


class Composed(msgspec.Struct, frozen=True, kw_only=True):
    message: api.CustomMessage
    asset: str | None = None
    """The asset the media id came from, when it can be resolved again."""
    media_id: str | None = None


async def compose(
    cmd: SendCommand, media: MediaClient | None, *, refused: str | None = None
) -> Composed:
    """The body for ``cmd``. ``refused``: a media id WeChat just refused (40007): resolve the
    asset again. Raises :class:`NotSendable`, or the media client's errors."""
    if isinstance(cmd, SendText):
        if not cmd.content:
            raise NotSendable("text content is empty")
        return Composed(message=api.text(cmd.openid, cmd.content))
    if isinstance(cmd, SendLink):
        return Composed(
            message=api.link(
                cmd.openid,
                title=cmd.title,
                description=cmd.description,
                url=cmd.url,
                thumb_url=cmd.thumb_url,
            )
        )
    if isinstance(cmd, SendImage):
        media_id = await _media_id(cmd.media_id, cmd.asset, media, refused, what="image")
        return Composed(message=api.image(cmd.openid, media_id), asset=cmd.asset, media_id=media_id)
    if isinstance(cmd, SendMiniProgramPage):
        thumb = await _media_id(
            cmd.thumb_media_id, cmd.thumb_asset, media, refused, what="mini program card thumb"
        )
        message = api.miniprogrampage(
            cmd.openid, title=cmd.title, pagepath=cmd.pagepath, thumb_media_id=thumb
        )
        return Composed(message=message, asset=cmd.thumb_asset, media_id=thumb)
    raise NotSendable(f"no WeChat message for {cmd.routing_key()}")


async def _media_id(
    media_id: str | None,
    asset: str | None,
    media: MediaClient | None,
    refused: str | None,
    *,
    what: str,
) -> str:
    if media_id and media_id != refused:
        return media_id
    if not asset:
        if media_id:
            raise NotSendable(f"WeChat refused the {what}'s media_id and no asset names it")
        raise NotSendable(f"the {what} needs a media_id or an asset name")
    if media is None:
        raise NotSendable(f"the {what} names asset {asset!r} but WXKF_MEDIA_URL is not set")
    ref = await media.asset_media_id(asset, refused=refused)
    return ref.media_id
