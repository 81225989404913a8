"""What an operator would build instead of the gateway, on the official SDK.

A minimal AskTable bridge on the official Feishu Python SDK (lark-oapi),
used by `make bench` (sim/src/bin/gateway-bench.rs) to measure the gateway
side by side with it. It does the same job as the gateway's hot paths and
nothing more:

- one `lark.ws.Client` per enabled channel of the Redis hash
  `at:channel:config:feishu` (read once at start), all on the SDK's one
  asyncio loop, which is the lightest way the SDK allows to hold many apps
  in one process;
- the bot's open_id from `/open-apis/bot/v3/info` at connect, so that group
  messages not @-ing the bot are skipped and its mention removed, as the
  gateway does;
- an `im.message.receive_v1` handler that builds the inbound item and runs
  the gateway's own Lua script (dedup marker + LPUSH in one step, the file
  given on the command line); an exception makes the SDK answer 500 so that
  Feishu redelivers, as the gateway does;
- one thread that pops `at:channel:outbound:feishu` and replies through the
  SDK's REST client (`im.v1.message.reply`, plain text, uuid from the id).

It has none of the gateway's error handling, pacing, rendering or status
reporting: the figures flatter it.

Usage: python lark_bridge.py <base_url> <redis_url> <inbound_script.lua>
Prints "READY" once the first config read is done, then one line per
channel connected ("CONNECTED <channel_id>").
"""
import json
import sys
import threading
import time

import lark_oapi as lark
import redis
from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody
from lark_oapi.ws import client as ws_client

INBOUND = "at:channel:inbound"
OUTBOUND = "at:channel:outbound:feishu"
CONFIG = "at:channel:config:feishu"
DEDUP_TTL = 86400


def tidy(text):
    """Spaces collapsed per line, as the gateway does."""
    return "\n".join(" ".join(w for w in line.split(" ") if w) for line in text.splitlines()).strip()


def inbound_item(channel_id, cfg, app_id, bot_open_id, data):
    """The gateway's inbound item (docs/PROTOCOL.md §2) for one text message,
    or None when the gateway would skip it (a group message not @-ing the bot)."""
    ev = data.event
    msg, sender = ev.message, ev.sender

    def is_bot(m):
        return m.id is not None and m.id.open_id == bot_open_id

    all_mentions = msg.mentions or []
    if msg.chat_type != "p2p" and not any(is_bot(m) for m in all_mentions):
        return None
    text = json.loads(msg.content).get("text", "").replace("@_all", "@all")
    for m in sorted(all_mentions, key=lambda m: -len(m.key)):
        text = text.replace(m.key, "" if is_bot(m) else f"@{m.name}")
    mentions = [{"name": m.name, "open_id": m.id.open_id if m.id else None}
                for m in all_mentions if not is_bot(m)]
    open_id = sender.sender_id.open_id if sender.sender_id else None
    return json.dumps({
        "schema": "at.channel.inbound", "v": 1,
        "id": f"feishu:{app_id}:{msg.message_id}",
        "ts": int(time.time() * 1000),
        "channel_type": "feishu", "channel_id": channel_id,
        "agent_id": cfg.get("agent_id"), "project_id": cfg.get("project_id"),
        "session_key": f"feishu:{channel_id}:{open_id or ''}",
        "sender": {
            "open_id": open_id,
            "union_id": sender.sender_id.union_id if sender.sender_id else None,
            "user_id": sender.sender_id.user_id if sender.sender_id else None,
            "tenant_key": sender.tenant_key, "sender_type": sender.sender_type,
        },
        "chat": {"chat_id": msg.chat_id, "chat_type": msg.chat_type},
        "message": {
            "message_id": msg.message_id, "root_id": msg.root_id or None,
            "parent_id": msg.parent_id or None, "thread_id": msg.thread_id or None,
            "create_time": int(msg.create_time) if msg.create_time else None,
            "msg_type": msg.message_type,
        },
        "question": tidy(text),
        "mentions": mentions,
        "event_id": data.header.event_id,
    }, ensure_ascii=False)


class Bridge:
    def __init__(self, base_url, redis_url, script_path):
        self.base_url = base_url
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        with open(script_path, encoding="utf-8") as f:
            self.store = self.redis.register_script(f.read())
        self.clients = {}  # channel_id -> ws client
        self.rest = {}  # channel_id -> REST client

    def handler(self, channel_id, cfg, bot_open_id):
        app_id = cfg["app_id"]

        def on_message(data):
            item = inbound_item(channel_id, cfg, app_id, bot_open_id, data)
            if item is None:
                return
            key = f"at:channel:dedup:feishu:{app_id}:{data.event.message.message_id}"
            self.store(keys=[key, INBOUND], args=[DEDUP_TTL, item])

        return (lark.EventDispatcherHandler.builder("", "")
                .register_p2_im_message_receive_v1(on_message).build())

    async def sync_config(self):
        """Connects every enabled channel not connected yet."""
        for field, raw in self.redis.hgetall(CONFIG).items():
            channel_id = field.decode()
            if channel_id in self.clients:
                continue
            cfg = json.loads(raw)
            if not cfg.get("enabled", True):
                continue
            rest = (lark.Client.builder().app_id(cfg["app_id"]).app_secret(cfg["app_secret"])
                    .domain(self.base_url).log_level(lark.LogLevel.ERROR).build())
            # The bot's own open_id, to tell its @-mention from others (as the gateway does).
            info = rest.request(lark.BaseRequest.builder().http_method(lark.HttpMethod.GET)
                                .uri("/open-apis/bot/v3/info")
                                .token_types({lark.AccessTokenType.TENANT}).build())
            bot_open_id = json.loads(info.raw.content)["bot"]["open_id"]
            client = ws_client.Client(
                cfg["app_id"], cfg["app_secret"],
                event_handler=self.handler(channel_id, cfg, bot_open_id),
                domain=self.base_url, log_level=lark.LogLevel.ERROR)
            self.clients[channel_id] = client
            self.rest[channel_id] = rest
            # What Client.start() does, minus blocking the loop forever.
            await client._connect()
            ws_client.loop.create_task(client._ping_loop())
            print("CONNECTED", channel_id, flush=True)

    def outbound_loop(self):
        con = redis.Redis.from_url(self.redis_url)
        while True:
            popped = con.brpop(OUTBOUND, timeout=1)
            if popped is None:
                continue
            item = json.loads(popped[1])
            rest = self.rest.get(item["channel_id"])
            if rest is None:
                print("unknown channel", item["channel_id"], file=sys.stderr, flush=True)
                continue
            body = (ReplyMessageRequestBody.builder()
                    .content(json.dumps({"text": item["content"]["text"]}, ensure_ascii=False))
                    .msg_type("text").uuid(item["id"][:50]).build())
            req = (ReplyMessageRequest.builder().message_id(item["target"]["message_id"])
                   .request_body(body).build())
            resp = rest.im.v1.message.reply(req)
            if not resp.success():
                print("reply failed", resp.code, resp.msg, file=sys.stderr, flush=True)


def main():
    base_url, redis_url, script_path = sys.argv[1:4]
    bridge = Bridge(base_url, redis_url, script_path)
    threading.Thread(target=bridge.outbound_loop, daemon=True).start()
    ws_client.loop.run_until_complete(bridge.sync_config())
    print("READY", flush=True)
    ws_client.loop.run_forever()


if __name__ == "__main__":
    main()
