"""A local OpenAI-compatible streaming server with known timings, for measuring the benchmark itself.

It listens on 127.0.0.1 only. It answers GET /v1/models and POST /v1/chat/completions with stream=true the way vLLM
does: a role-only chunk at once, then (after `first_token_delay_s`) one token per chunk every `inter_token_delay_s`,
a finish_reason chunk, a usage chunk when stream_options.include_usage, then `data: [DONE]`. Markers in the last
user message pick other answers: [[500]] and [[429]] error responses, [[hang]] a stream that stalls, [[cut]] a
stream that stops without a finish. A `tools` definition yields tool-call deltas; reasoning deltas come first unless
the server imitates a vLLM started without its parsers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    model: str = "nvidia/nemotron-3-ultra-test"
    first_token_delay_s: float = 0.2
    inter_token_delay_s: float = 0.02
    tokens: int = 8
    reasoning_tokens: int = 3  # reasoning deltas before the answer (reasoning parser on)
    tool_parser: bool = True  # False: the tool call comes back as plain text, as without --tool-call-parser
    reasoning_parser: bool = True  # False: the thinking comes back inside content, between <think> tags
    api_key: str | None = None  # when set, requests without "Authorization: Bearer <key>" get 401
    hang_s: float = 3.0
    requests: list[dict] = field(default_factory=list)  # every chat request body received, in order
    lock: threading.Lock = field(default_factory=threading.Lock)


def _chunk(model: str, delta: dict, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour: Behaviour

    def setup(self) -> None:
        super().setup()
        # each SSE event must leave at once, or the measured gaps would be Nagle's, not the server's
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.behaviour.api_key
        header = self.headers.get("Authorization", "")
        if key is None or header == f"Bearer {key}":
            return True
        # echo the header back, as careless servers do: the client must not let it reach its record
        self._json(401, {"error": {"message": f"bad credentials: {header}", "type": "Unauthorized"}})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if not self._authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.behaviour.model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self._authorized():
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        b = self.behaviour
        with b.lock:
            b.requests.append(body)
        prompt = body["messages"][-1]["content"]
        if "[[500]]" in prompt:
            self._json(500, {"error": {"message": "internal error", "type": "InternalServerError"}})
            return
        if "[[429]]" in prompt:
            self._json(429, {"error": {"message": "too many requests", "type": "RateLimitError"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._stream(body, prompt)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, payload: str) -> None:
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, body: dict, prompt: str) -> None:
        b, model = self.behaviour, self.behaviour.model
        self._send(json.dumps(_chunk(model, {"role": "assistant", "content": ""})))
        if "[[hang]]" in prompt:
            time.sleep(b.hang_s)
            return
        time.sleep(b.first_token_delay_s)
        emitted = 0
        if body.get("tools"):
            emitted = self._tool_call(body)
        else:
            for i in range(b.reasoning_tokens):
                text = f"step{i} "
                delta = {"reasoning_content": text} if b.reasoning_parser else \
                    {"content": ("<think>" if i == 0 else "") + text}
                self._send(json.dumps(_chunk(model, delta)))
                emitted += 1
                time.sleep(b.inter_token_delay_s)
            for i in range(min(b.tokens, body.get("max_tokens", b.tokens))):
                if i:
                    time.sleep(b.inter_token_delay_s)
                self._send(json.dumps(_chunk(model, {"content": f"tok{i} "})))
                emitted += 1
                if "[[cut]]" in prompt and i == 2:
                    self.wfile.write(b"0\r\n\r\n")
                    return
            self._send(json.dumps(_chunk(model, {}, "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._send(json.dumps({"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model,
                                   "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": emitted,
                                                            "total_tokens": 11 + emitted}}))
        self._send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def _tool_call(self, body: dict) -> int:
        b, model = self.behaviour, self.behaviour.model
        name = body["tools"][0]["function"]["name"]
        if not b.tool_parser:
            text = f'<tool_call>{{"name": "{name}", "arguments": {{"city": "Paris"}}}}</tool_call>'
            self._send(json.dumps(_chunk(model, {"content": text})))
            self._send(json.dumps(_chunk(model, {}, "stop")))
            return 1
        fragments = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}},
                     {"index": 0, "function": {"arguments": '{"city": '}},
                     {"index": 0, "function": {"arguments": '"Paris"}'}}]
        for fragment in fragments:
            self._send(json.dumps(_chunk(model, {"tool_calls": [fragment]})))
            time.sleep(b.inter_token_delay_s)
        self._send(json.dumps(_chunk(model, {}, "tool_calls")))
        return len(fragments)


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer(Behaviour(...)) as server:`; `server.url` is its base URL."""

    def __init__(self, behaviour: Behaviour | None = None):
        self.behaviour = behaviour or Behaviour()
        handler = type("Handler", (_Handler,), {"behaviour": self.behaviour})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
