"""The official Feishu Python SDK (lark-oapi) as a long-connection client.

Used by tests/e2e/official_sdk.rs to check that feishu-sim speaks the protocol
the official client speaks. Prints one line per received message event:
    EVENT <message_id> <content JSON>
Usage: python lark_client.py <app_id> <app_secret> <base_url>
"""
import json
import sys

import lark_oapi as lark


def main() -> None:
    app_id, app_secret, base_url = sys.argv[1:4]

    def on_message(data: lark.im.v1.P2ImMessageReceiveV1) -> None:
        msg = data.event.message
        print("EVENT", msg.message_id, json.dumps(json.loads(msg.content), ensure_ascii=False), flush=True)

    handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(on_message).build()
    client = lark.ws.Client(app_id, app_secret, event_handler=handler, domain=base_url, log_level=lark.LogLevel.DEBUG)
    client.start()


if __name__ == "__main__":
    main()
