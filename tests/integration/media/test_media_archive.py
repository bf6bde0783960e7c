"""The archive: user images from ``msg.image`` events saved, and a ``media.archived`` fact."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from libs.common.bus import Bus, DeadLetter, Delivery
from libs.common.keys import BUS
from libs.common.schemas import AnyMessage, ImageReceived, MediaArchived, TextReceived
from libs.common.topology import EVENTS, MEDIA_ARCHIVE, QueueSpec
from services.simulator.config import DEMO_APPID
from services.simulator.faults import Fault, FaultRule
from tests.integration.media.harness import JPEG_MAGIC, MakeMedia, Media, image
from tests.support.metrics import sample
from tests.support.waiting import eventually

CREATE_TIME = 1_767_225_600 + 3600  # 2026-01-01 01:00 UTC


def image_event(media_id: str, *, appid: str = DEMO_APPID, **fields: object) -> ImageReceived:
    return ImageReceived(
        appid=appid,
        openid="oUser" + uuid.uuid4().hex[:10],
        correlation_id=uuid.uuid4().hex,
        to_user="gh_5f2a0c4e9b7d",
        create_time=CREATE_TIME,
        msg_id=2**60 + 7,
        media_id=media_id,
        **fields,  # type: ignore[arg-type]
    )


async def dead_letter_of(bus: Bus, event: ImageReceived) -> DeadLetter:
    """The archive queue's dead letter for ``event`` (the queue may hold earlier tests')."""

    async def find() -> DeadLetter | None:
        for dead in await bus.dead_letters(MEDIA_ARCHIVE.name, limit=1000):
            if event.id.encode() in dead.body:
                return dead
        return None

    found = await eventually(find, lambda d: d is not None, what="the event's dead letter")
    assert found is not None
    return found


class Observer:
    """A queue of the test's own, bound to media.archived facts."""

    def __init__(self) -> None:
        self.facts: list[MediaArchived] = []

    async def start(self, bus: Bus) -> None:
        spec = QueueSpec(
            name=f"wxkf.test.archived.{uuid.uuid4().hex[:8]}",
            exchange=EVENTS,
            bindings=("media.archived",),
        )
        await bus.declare([spec])
        await bus.consume(spec, self.handle)

    async def handle(self, msg: AnyMessage, delivery: Delivery) -> None:
        assert isinstance(msg, MediaArchived)
        self.facts.append(msg)


@pytest.fixture
async def archiving(
    make_media: MakeMedia, buses: tuple[Bus, Bus], tmp_path: Path
) -> tuple[Media, Bus, Observer]:
    service_bus, test_bus = buses
    media = await make_media(bus=service_bus, archive_dir=str(tmp_path / "archive"))
    observer = Observer()
    await observer.start(test_bus)
    return media, test_bus, observer


async def test_a_user_image_is_archived_with_a_fact(
    archiving: tuple[Media, Bus, Observer], tmp_path: Path
) -> None:
    media, bus, observer = archiving
    data = image(JPEG_MAGIC, size=150_000)
    pushed = media.sim.upload_media(data)
    event = image_event(pushed.media_id)
    await bus.publish(event)

    facts = await eventually(lambda: observer.facts, what="a media.archived fact")
    fact = facts[0]
    sha = hashlib.sha256(data).hexdigest()
    assert fact.path == f"2026/01/01/{sha}.jpg"
    assert (fact.sha256, fact.size, fact.content_type) == (sha, len(data), "image/jpeg")
    assert (fact.event_id, fact.media_id) == (event.id, pushed.media_id)
    assert (fact.openid, fact.correlation_id) == (event.openid, event.correlation_id)
    assert (tmp_path / "archive" / fact.path).read_bytes() == data
    assert [p.name for p in (tmp_path / "archive").iterdir()] == ["2026"]  # no temp files left


async def test_a_redelivered_event_rewrites_the_same_file_and_fact(
    archiving: tuple[Media, Bus, Observer], tmp_path: Path
) -> None:
    media, bus, observer = archiving
    data = image()
    event = image_event(media.sim.upload_media(data).media_id)
    await bus.publish(event)
    await bus.publish(event)
    facts = await eventually(lambda: observer.facts, lambda f: len(f) == 2, what="two facts")
    assert facts[0].id == facts[1].id  # consumers deduplicate on it
    files = [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
    assert len(files) == 1


async def test_only_images_are_archived(
    archiving: tuple[Media, Bus, Observer], tmp_path: Path
) -> None:
    media, bus, observer = archiving
    text = TextReceived(
        appid="wx5f2a0c4e9b7d1386",
        openid="oUserText",
        correlation_id="c1",
        to_user="gh_5f2a0c4e9b7d",
        create_time=CREATE_TIME,
        msg_id=1,
        content="hello",
    )
    await bus.publish(text)
    # Then an image, which is archived: the text before it was left alone.
    await bus.publish(image_event(media.sim.upload_media(image()).media_id))
    await eventually(lambda: observer.facts, what="the image's fact")
    assert len(observer.facts) == 1
    assert media.downloads(0) == 1


async def test_an_image_sent_to_another_app_is_skipped_and_counted(
    archiving: tuple[Media, Bus, Observer],
) -> None:
    media, bus, observer = archiving
    skipped = sample("wxkf_media_archived_total", outcome="other_app")
    retried = sample("wxkf_bus_deliveries_total", queue=MEDIA_ARCHIVE.name, outcome="retry")
    # Its media_id even exists: only the appid says it is not this service's to archive.
    foreign = image_event(media.sim.upload_media(image()).media_id, appid="wx0123456789abcdef")
    ours = image_event(media.sim.upload_media(image()).media_id)
    await bus.publish(foreign)
    await bus.publish(ours)

    await eventually(
        lambda: sample("wxkf_media_archived_total", outcome="other_app"),
        lambda value: value == skipped + 1,
        what="the other app's image counted as skipped",
    )
    facts = await eventually(lambda: observer.facts, what="our image's fact")
    assert [fact.event_id for fact in facts] == [ours.id]
    assert media.downloads(0) == 1  # the other app's image was not even fetched
    # Acknowledged: neither retried nor dead-lettered.
    assert sample("wxkf_bus_deliveries_total", queue=MEDIA_ARCHIVE.name, outcome="retry") == (
        retried
    )
    dead = await bus.dead_letters(MEDIA_ARCHIVE.name, limit=1000)
    assert not [d for d in dead if foreign.id.encode() in d.body]
    assert sample("wxkf_media_archived_total", outcome="other_app") == skipped + 1


async def test_an_image_wechat_no_longer_has_is_dead_lettered(
    archiving: tuple[Media, Bus, Observer],
) -> None:
    media, bus, observer = archiving
    pushed = media.sim.upload_media(image())
    media.sim.clock.advance(3 * 86400)
    event = image_event(pushed.media_id)
    await bus.publish(event)
    dead = await dead_letter_of(bus, event)
    assert "40007" in dead.reason
    assert dead.attempts == 1
    assert observer.facts == []


async def test_a_busy_wechat_is_retried_through_the_bus(
    archiving: tuple[Media, Bus, Observer],
) -> None:
    media, bus, observer = archiving
    data = image()
    pushed = media.sim.upload_media(data)
    media.sim.faults.add(FaultRule(path="/cgi-bin/media/get", sequence=[Fault(errcode=-1)]))
    await bus.publish(image_event(pushed.media_id))
    facts = await eventually(lambda: observer.facts, what="the fact after a retry")
    assert facts[0].size == len(data)
    # By answer: a retry left in the module's broker by an earlier test may still come in, for
    # a media this simulator never had (40007).
    assert (media.downloads(-1), media.downloads(0)) == (1, 1)


async def test_an_image_over_the_archive_cap_is_dead_lettered(
    make_media: MakeMedia, buses: tuple[Bus, Bus], tmp_path: Path
) -> None:
    service_bus, bus = buses
    media = await make_media(
        bus=service_bus, archive_dir=str(tmp_path / "archive"), archive_max_bytes=1000
    )
    event = image_event(media.sim.upload_media(image(size=5000)).media_id)
    await bus.publish(event)
    dead = await dead_letter_of(bus, event)
    assert "WXKF_ARCHIVE_MAX_BYTES" in dead.reason
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == []


async def test_without_an_archive_dir_the_service_takes_no_bus(make_media: MakeMedia) -> None:
    media = await make_media()
    assert not media.settings.archive_enabled
    assert media.client.app is not None
    assert BUS not in media.client.app
