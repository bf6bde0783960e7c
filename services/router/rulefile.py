"""The rules file as typed Structs: what a YAML rules file may say, field by field.

These Structs hold the file as written (strings for times, durations and dates); the
compiler checks their meaning and turns them into the matcher. docs/rules.md is the guide.
"""

from __future__ import annotations

import msgspec

StrOrList = str | list[str]


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every part of the file refuses unknown keys, so a typo is an error and not a no-op."""


class TextMatch(_Spec, frozen=True, kw_only=True):
    """Conditions on a piece of text; each given key must hold, a list means any of it."""

    equals: StrOrList | None = None
    contains: StrOrList | None = None
    starts_with: StrOrList | None = None
    regex: StrOrList | None = None
    fold: bool = True
    """Compare case-insensitively and with full-width and half-width forms made equal."""


TextCondition = str | list[str] | TextMatch
"""A bare string or list is shorthand for ``{equals: ...}``."""


class SessionMatch(_Spec, frozen=True, kw_only=True):
    transferred_within: str | float | None = None
    """Handed to a human agent less than this long ago (``30m``, ``2h``, ``90s`` or seconds)."""
    not_transferred_within: str | float | None = None
    tagged: StrOrList | None = None
    """The session carries any of these tags."""
    not_tagged: StrOrList | None = None


class Match(_Spec, frozen=True, kw_only=True):
    """Every given condition must hold."""

    type: StrOrList | None = None
    """Message types: text, image, miniprogrampage, event (and WeChat's other MsgTypes)."""
    event: StrOrList | None = None
    """Event names, e.g. user_enter_tempsession; implies ``type: event``."""
    text: TextCondition | None = None
    session_from: TextCondition | None = None
    """The SessionFrom of the enter-session event (the button's session-from attribute)."""
    page_path: TextCondition | None = None
    """The page path of a mini program card the user sent."""
    hours: str | None = None
    """Inside the named business hours."""
    outside_hours: str | None = None
    """Outside the named business hours."""
    first_contact_today: bool | None = None
    """Whether this is the user's first message or event of the day (in the file's time zone)."""
    session: SessionMatch | None = None
    users: list[str] | None = None
    """Only these openids."""
    except_users: list[str] | None = None
    """Never these openids."""


class ImageRef(_Spec, frozen=True, kw_only=True):
    asset: str | None = None
    """The name of an image the media service keeps."""
    media_id: str | None = None
    """A WeChat temporary media id (valid for three days)."""


class LinkSpec(_Spec, frozen=True, kw_only=True):
    title: str
    description: str = ""
    url: str
    thumb_url: str = ""


class CardSpec(_Spec, frozen=True, kw_only=True):
    """A mini program card (miniprogrampage)."""

    title: str
    pagepath: str
    thumb_asset: str | None = None
    thumb_media_id: str | None = None


class ReplyItem(_Spec, frozen=True, kw_only=True):
    """One message of a reply; exactly one key is given."""

    text: str | None = None
    image: str | ImageRef | None = None
    """An asset name, or ``{asset: ...}`` / ``{media_id: ...}``."""
    link: LinkSpec | None = None
    miniprogram: CardSpec | None = None


Reply = str | list[str | ReplyItem]
"""A bare string is one text message; a list is several messages, sent in order."""


class Actions(_Spec, frozen=True, kw_only=True):
    """What happens when a rule matches (and what the fallback does)."""

    reply: Reply | None = None
    typing: bool = False
    """Show "typing…" first (e.g. while an extension composes the answer)."""
    transfer: bool = False
    """Hand the message to the human agents (user messages only)."""
    extension: StrOrList | None = None
    """Publish the event to these extension topics (``ext.<topic>`` on kf.events)."""
    tag: StrOrList | None = None
    """Add these tags to the user's session."""
    ignore: bool = False
    """Do nothing, on purpose."""


class Rule(Actions, frozen=True, kw_only=True, rename={"continue_": "continue"}):
    name: str
    description: str = ""
    enabled: bool = True
    match: Match | None = None
    continue_: bool = False
    """Keep trying the rules after this one once it has acted."""


class Hours(_Spec, frozen=True, kw_only=True):
    """Business hours: open on these weekdays in these ranges, except holidays."""

    timezone: str | None = None
    """An IANA name (Asia/Shanghai); defaults to the file's time zone."""
    weekdays: StrOrList = "mon-sun"
    """``mon``…``sun``, ranges such as ``mon-fri``."""
    ranges: StrOrList = "00:00-24:00"
    """``HH:MM-HH:MM``, end excluded; ``24:00`` is the end of the day."""
    holidays: list[str] = []
    """Dates (``YYYY-MM-DD``) closed all day."""
    workdays: list[str] = []
    """Dates open although their weekday is not listed (make-up working days)."""


class RuleFile(_Spec, frozen=True, kw_only=True):
    version: int = 1
    timezone: str = "Asia/Shanghai"
    """The zone of business hours, of "today" and of the date and time in templates."""
    hours: dict[str, Hours] = {}
    rules: list[Rule] = []
    fallback: Actions
    """What happens when no rule matched (required)."""
