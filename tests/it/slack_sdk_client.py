"""Slack's official Python SDK as a client of zbot's fake Slack: it opens a Socket Mode connection,
receives one event, acknowledges it and prints what it got. Proves the fake speaks the real protocol."""
import json
import sys
import threading

from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

api_url, app_token, bot_token = sys.argv[1:4]
received = threading.Event()


def on_request(client, request):
    client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
    event = request.payload.get("event", {})
    print(json.dumps({"type": request.type, "event_type": event.get("type"), "text": event.get("text")}), flush=True)
    received.set()


client = SocketModeClient(app_token=app_token, web_client=WebClient(token=bot_token, base_url=api_url + "/"))
client.socket_mode_request_listeners.append(on_request)
client.connect()
ok = received.wait(30)
client.close()
sys.exit(0 if ok else 1)
