"""Push decoding: wxkf's protocol core beside the plain standard-library pipeline.

Run: .venv/bin/python bench/bench_codec.py [--iterations N] [--rounds R]

Each row does the same work three ways, interleaved round by round so that the machine's
noise falls on all of them alike; the figure is the best round's mean per push.

* wxkf: ``open_push`` (signature, envelope, AES, padding, length and appid checks, typed
  message), or ``codec.parse`` for the plain rows.
* stdlib: what a handler written directly against the standard library does for the same
  checks: hashlib/hmac for the signature, ``base64``, a ``cryptography`` AES cipher built for
  the push, ``xml.etree.ElementTree.fromstring`` or ``json.loads`` into a dict, ``int()`` on
  the numbers. (It is not hardened: ElementTree expands internal entities.)
* wechatpy: ``WeChatCrypto.decrypt_message`` then ``parse_message``, when wechatpy is
  installed (``pip install -e '.[bench]'``); it reads XML only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes

from libs.common.wechat import codec
from libs.common.wechat.codec import TextMessage
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.push import PushConfig, build_push, open_push

TOKEN = "benchmark-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx2c2769f8efd9abc2"
MESSAGE = TextMessage(
    to_user="gh_10f6c3c3ac5a",
    from_user="oyORnuP8q7ou2gfYjqLzSIWZf0rs",
    create_time=1714112445,
    content="你好，我想查询一下订单 #20240426-0042 的物流状态，谢谢！",
    msg_id=6054768590064713728,
)


def stdlib_open(query: dict[str, str], body: bytes, fmt: str) -> dict[str, Any]:
    """The same checks as open_push, written the direct way."""
    envelope = (
        {e.tag: e.text for e in ET.fromstring(body)}  # noqa: S314 - the baseline; our own bytes
        if fmt == "xml"
        else json.loads(body)
    )
    encrypt = envelope["Encrypt"]
    parts = sorted([TOKEN, query["timestamp"], query["nonce"], encrypt])
    expected = hashlib.sha1("".join(parts).encode()).hexdigest()  # noqa: S324 - WeChat's scheme
    if not hmac.compare_digest(expected, query["msg_signature"]):
        raise ValueError("signature")
    key = base64.b64decode(AES_KEY + "=")
    decryptor = AesCipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= 32 or plain[-pad:] != bytes((pad,)) * pad:
        raise ValueError("padding")
    content = plain[:-pad]
    size = int.from_bytes(content[16:20], "big")
    if content[20 + size :] != APPID.encode():
        raise ValueError("appid")
    return stdlib_parse(content[20 : 20 + size], fmt)


def stdlib_parse(msg: bytes, fmt: str) -> dict[str, Any]:
    if fmt == "xml":
        doc: dict[str, Any] = {e.tag: e.text for e in ET.fromstring(msg)}  # noqa: S314 - baseline
    else:
        doc = json.loads(msg)
    doc["CreateTime"] = int(doc["CreateTime"])
    doc["MsgId"] = int(doc["MsgId"])
    return doc


def per_call_us(fn: Callable[[], object], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    cipher = Cipher.from_key(AES_KEY, APPID)
    try:
        from wechatpy import parse_message
        from wechatpy.crypto import WeChatCrypto
    except ImportError:
        wechatpy = None
    else:
        wechatpy = WeChatCrypto(TOKEN, AES_KEY, APPID)

    rows: list[tuple[str, dict[str, Callable[[], object]]]] = []
    for fmt in ("xml", "json"):
        query, body = build_push(
            MESSAGE, token=TOKEN, cipher=cipher, mode="safe", fmt=fmt, timestamp=1714112445,
            nonce="415670741",
        )  # fmt: skip
        config = PushConfig(token=TOKEN, appid=APPID, cipher=cipher, mode="safe", fmt=fmt)
        cases: dict[str, Callable[[], object]] = {
            "wxkf": lambda q=query, b=body, c=config: open_push(q, b, config=c, now=1714112445),
            "stdlib": lambda q=query, b=body, f=fmt: stdlib_open(q, b, f),
        }
        if wechatpy is not None and fmt == "xml":
            cases["wechatpy"] = lambda q=query, b=body: parse_message(
                wechatpy.decrypt_message(b, q["msg_signature"], q["timestamp"], q["nonce"])
            )
        rows.append((f"safe-mode {fmt.upper()} push: verify, decrypt, parse", cases))

    crlf = codec.render(MESSAGE, "xml").replace(b"><", b">\r\n<")
    for label, fmt, doc in (
        ("plain XML message: parse", "xml", codec.render(MESSAGE, "xml")),
        ("plain XML, CRLF between elements (expat path)", "xml", crlf),
        ("plain JSON message: parse", "json", codec.render(MESSAGE, "json")),
    ):
        cases = {
            "wxkf": lambda d=doc, f=fmt: codec.parse(d, f),
            "stdlib": lambda d=doc, f=fmt: stdlib_parse(d, f),
        }
        if wechatpy is not None and fmt == "xml":
            cases["wechatpy"] = lambda d=doc: parse_message(d)
        rows.append((label, cases))

    for _, cases in rows:  # every path must work before it is timed
        for fn in cases.values():
            fn()

    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for label, cases in rows:
            for name, fn in cases.items():
                figure = per_call_us(fn, args.iterations)
                best[label, name] = min(best.get((label, name), figure), figure)

    print(f"µs per push, best of {args.rounds} rounds x {args.iterations} iterations")
    header = f"{'workload':<50} {'wxkf':>8} {'stdlib':>8} {'ratio':>7} {'wechatpy':>9}"
    print(header)
    print("-" * len(header))
    for label, cases in rows:
        ours, base = best[label, "wxkf"], best[label, "stdlib"]
        other = f"{best[label, 'wechatpy']:9.1f}" if "wechatpy" in cases else f"{'n/a':>9}"
        print(f"{label:<50} {ours:8.1f} {base:8.1f} {base / ours:6.2f}x {other}")
    print("ratio = stdlib time / wxkf time (above 1: wxkf is faster)")
    if wechatpy is None:
        print("wechatpy is not installed: pip install -e '.[bench]' adds that column")


if __name__ == "__main__":
    main()
