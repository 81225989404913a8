"""The AskTable Server side of the gateway's Redis contract v1, as a short
reference (docs/PROTOCOL.md, "The server's side, end to end").

It does what a real server must do, and nothing more: consume
`at:channel:inbound` reliably (BLMOVE into a processing list of its own,
LREM only once the answer is queued; a crash means the question is handled
again), answer each inbound `id` once (a marker set in the same MULTI as
the answer), stream a progress item carrying the full text so far, queue
the final item, and read the gateway's delivery receipt. The "agent" here
is a stand-in that answers with a small Markdown table.

Usage: REDIS_URL=redis://127.0.0.1:6379/0 python asktable_server.py
Environment: SERVER_ID (default: the host name; one per server process),
PROGRESS (1 = stream one progress item first, default 1),
RECEIPT_WAIT (seconds to wait for the receipt, default 10; 0 = do not read).
Needs redis-py (pip install redis).
"""
import json
import os
import socket
import sys
import time

import redis

INBOUND = "at:channel:inbound"
OUTBOUND = "at:channel:outbound:feishu"
ANSWERED_TTL = 86400  # as long as the gateway's dedup window (DEDUP_TTL)


def log(msg):
    print(f"asktable-server: {msg}", flush=True)


def agent(question):
    """The stand-in for the data agent: Markdown, as AskTable answers."""
    return (
        f"你问的是：**{question}**\n\n"
        "| 省份 | 销售额（万元） | 同比 |\n|---|---|---|\n"
        "| 上海 | 512 | +12% |\n| 浙江 | 433 | +8% |\n| 江苏 | 339 | +5% |\n\n"
        "合计 **1,284 万元**。"
    )


def outbound(item, answer_id, kind, text):
    """An outbound item answering inbound `item` (docs/schema/outbound.schema.json)."""
    return json.dumps({
        "schema": "at.channel.outbound", "v": 1, "id": answer_id, "ts": int(time.time() * 1000),
        "channel_id": item["channel_id"],
        "in_reply_to": item["id"],
        "target": {
            "message_id": item["message"]["message_id"],
            "chat_id": item["chat"]["chat_id"],
            "reply_in_thread": False,
        },
        "kind": kind, "status": "ok",
        "content": {"text": text, "attachments": []},
        "error": None,
    }, ensure_ascii=False)


def handle(r, raw, progress, receipt_wait):
    try:
        item = json.loads(raw)
    except ValueError:
        log("an inbound item is not JSON; dropped")
        return
    if item.get("schema") != "at.channel.inbound" or item.get("v") != 1:
        log(f"unknown inbound schema/v {item.get('schema')!r}/{item.get('v')!r}; dropped")
        return
    inbound_id = item["id"]
    answered = f"asktable:answered:{inbound_id}"
    if r.exists(answered):
        log(f"{inbound_id} was answered before (a redelivery); skipped")
        return
    text = agent(item["question"])
    # Answer ids are derived from the inbound id: queueing again after a
    # crash reuses them, and the gateway's Feishu uuids keep the reply single.
    final_id = "a-" + inbound_id.rsplit(":", 1)[-1][-40:]
    if progress:
        # Progress items carry the full text so far, not a delta.
        r.lpush(OUTBOUND, outbound(item, "p-" + final_id[2:], "progress", text.split("\n")[0]))
    pipe = r.pipeline(transaction=True)
    pipe.lpush(OUTBOUND, outbound(item, final_id, "final", text))
    pipe.set(answered, final_id, ex=ANSWERED_TTL)
    pipe.execute()
    log(f"answered {inbound_id} with {final_id}")
    if receipt_wait > 0:
        deadline = time.time() + receipt_wait
        while time.time() < deadline:
            receipt = r.get(f"at:channel:receipt:feishu:{final_id}")
            if receipt:
                rec = json.loads(receipt)
                if rec["status"] == "delivered":
                    log(f"receipt {final_id}: delivered as {','.join(rec['message_ids'])}")
                else:
                    log(f"receipt {final_id}: dead-lettered: {rec['reason']}")
                break
            time.sleep(0.1)


def main():
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    server_id = os.environ.get("SERVER_ID") or socket.gethostname()
    progress = os.environ.get("PROGRESS", "1") == "1"
    receipt_wait = float(os.environ.get("RECEIPT_WAIT", "10"))
    processing = f"asktable:inbound:processing:{server_id}"
    r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    log(f"serving {INBOUND} as {server_id}")
    while True:
        try:
            # A question this process took and did not finish (it crashed, or
            # Redis failed mid-way) comes first; then the oldest new one.
            raw = r.lindex(processing, -1)
            if raw is None:
                raw = r.blmove(INBOUND, processing, 1, "RIGHT", "LEFT")
            if raw is None:
                continue
            handle(r, raw, progress, receipt_wait)
            r.lrem(processing, 1, raw)
        except redis.RedisError as e:
            log(f"Redis: {e}; retrying")
            time.sleep(0.5)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
