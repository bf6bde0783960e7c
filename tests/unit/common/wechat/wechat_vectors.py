"""WeChat's published examples (WECHAT.md §12), shared by the protocol tests."""

from __future__ import annotations

# --- §12.1: the mini program documentation's worked example (JSON, safe mode) -----------------

TOKEN = "AAAAA"
AES_KEY = "A" * 43
APPID = "wxba5fad812f8e6fb9"
GH_ID = "gh_97417a04a28d"
OPENID = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"

URL_CHECK = {
    "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
    "timestamp": "1714036504",
    "nonce": "1514711492",
    "echostr": "4375120948345356249",
}

PLAIN_QUERY = {
    "signature": "899cf89e464efb63f54ddac96b0a0a235f53aa78",
    "timestamp": "1714037059",
    "nonce": "486452656",
}
PLAIN_BODY = (
    b'{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY",'
    b'"CreateTime":1714037059,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}'
)

E1 = (
    "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJG"
    "QqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrf"
    "MZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgR"
    "tWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="
)
E1_RANDOM = b"a8eedb185eb2fecf"
E1_MSG = (
    b'{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY",'
    b'"CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}'
)
SAFE_QUERY = {
    "signature": "6c5c811b55cc85e0e1b54100749188c20beb3f5d",
    "timestamp": "1714112445",
    "nonce": "415670741",
    "openid": OPENID,
    "encrypt_type": "aes",
    "msg_signature": "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
}
SAFE_BODY = b'{"ToUserName":"gh_97417a04a28d","Encrypt":"' + E1.encode() + b'"}'

REPLY_RANDOM = b"707722b803182950"
REPLY_MSG = b'{"demo_resp":"good luck"}'
REPLY_ENCRYPT = (
    "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
)
REPLY_TIMESTAMP = 1713424427
REPLY_NONCE = "415670741"
REPLY_SIGNATURE = "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
REPLY_JSON = (
    b'{"Encrypt":"'
    + REPLY_ENCRYPT.encode()
    + b'","MsgSignature":"'
    + REPLY_SIGNATURE.encode()
    + b'","TimeStamp":1713424427,"Nonce":"415670741"}'
)

# --- §12.2: Tencent's WXBizMsgCrypt sample (XML, compatible-mode body) ------------------------

S_TOKEN = "spamtest"
S_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
S_APPID = "wx2c2769f8efd9abc2"
S_TIMESTAMP = "1409735669"
S_NONCE = "1320562132"
S_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
S_SIGNATURE = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
E2 = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6"
    "F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T33"
    "2jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCg"
    "avjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6Oewp"
    "usjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
E2_RANDOM = b"89465c840c5f116f"
E2_MSG = (
    b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    b"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    b"<CreateTime>1409735668</CreateTime>\n"
    b"<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[abcdteT]]></Content>\n"
    b"<MsgId>6054768590064713728</MsgId>\n"
    b"</xml>"
)
S_QUERY = {
    "signature": S_SIGNATURE,
    "timestamp": S_TIMESTAMP,
    "nonce": S_NONCE,
    "encrypt_type": "aes",
    "msg_signature": S_MSG_SIGNATURE,
}
S_BODY = (
    b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
    b"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>"
    b"<CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    b"<Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId>"
    b"<Encrypt><![CDATA[" + E2.encode() + b"]]></Encrypt></xml>"
)

# --- §5: the documentation's message examples ---------------------------------------------------

TEXT_XML = (
    b"<xml><ToUserName><![CDATA[toUser]]></ToUserName>"
    b"<FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1482048670</CreateTime>"
    b"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content>"
    b"<MsgId>1234567890123456</MsgId></xml>"
)
