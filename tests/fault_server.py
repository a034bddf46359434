#!/usr/bin/env python3
"""fault_server.py - a loopback OpenAI-compatible server for tests/test_remote.c.

It plays a good streaming server (GET /v1/models, POST /v1/chat/completions as
server-sent events with usage and reasoning_content) and, byte for byte, each
way a server can fail. The scenario is the first word of the last user
message (so one engine can fail a turn and carry on with the next); a path
prefix before /v1 picks the model list's variant (/empty/v1/models) and which
server's own endpoints the root answers, with bodies as those servers write
them: /vllm (GET /vllm/metrics, vLLM's Prometheus text), /vllmv1 (newer
vLLM: kv_cache_usage_perc and the prefix cache counters), /llama
(llama-server's /metrics and /slots), /ollama (Ollama's /api/ps), /nan
(metrics whose values are NaN, and none kvchat reads). Anything else is a 404.

It binds 127.0.0.1 (on --port, default a free one), prints "PORT BLACKHOLE\n"
where BLACKHOLE is a listening port whose accept queue is full, so a connect
there hangs (a connect timeout without leaving the machine), and exits by
itself when its stdin closes (the test went away) or after --lifetime seconds.
Python standard library only.
"""
import argparse
import json
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = {"object": "list", "data": [{"id": "fault-model", "object": "model"},
                                     {"id": "other-model", "object": "model"}]}
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def event(obj):
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def delta_raw(field, raw):
    """A chunk whose text is RAW bytes as they are (possibly not UTF-8)."""
    return (b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
            b'"delta":{"' + field.encode() + b'":"' + raw + b'"},"finish_reason":null}]}\n\n')


def delta(text, field="content"):
    return event({"id": "c1", "object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {field: text}, "finish_reason": None}]})


def finish(reason):
    return event({"id": "c1", "object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})


def usage():
    return event({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": USAGE})


DONE = b"data: [DONE]\n\n"

# vLLM 0.6-style /metrics: HELP and TYPE comments, labels, histograms.
VLLM_METRICS = b"""# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="fault-model"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="fault-model"} 2.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="fault-model"} 0.375
# HELP vllm:gpu_prefix_cache_hit_rate GPU prefix cache block hit rate.
# TYPE vllm:gpu_prefix_cache_hit_rate gauge
vllm:gpu_prefix_cache_hit_rate{model_name="fault-model"} 0.25
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="fault-model"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="fault-model"} 12.0
vllm:time_to_first_token_seconds_count{model_name="fault-model"} 12.0
vllm:time_to_first_token_seconds_sum{model_name="fault-model"} 1.5
python_gc_objects_collected_total{generation="0"} 1234.0
"""

# vLLM V1: renamed gauge, hits/queries counters, two engines (data parallel).
VLLM_V1_METRICS = b"""# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="fault-model"} 1.0
vllm:num_requests_running{engine="1",model_name="fault-model"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="fault-model"} 0.0
vllm:num_requests_waiting{engine="1",model_name="fault-model"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="fault-model"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="fault-model"} 0.25
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="fault-model"} 600.0
vllm:prefix_cache_queries_total{engine="1",model_name="fault-model"} 400.0
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="fault-model"} 300.0
vllm:prefix_cache_hits_total{engine="1",model_name="fault-model"} 100.0
"""

# llama-server --metrics (no labels; a version that still has the KV gauges).
LLAMA_METRICS = b"""# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1024
# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.125
# HELP llamacpp:kv_cache_tokens KV-cache tokens.
# TYPE llamacpp:kv_cache_tokens gauge
llamacpp:kv_cache_tokens 512
# HELP llamacpp:requests_processing Number of request processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of request deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 0
"""

LLAMA_SLOTS = [
    {"id": 0, "id_task": 7, "n_ctx": 4096, "speculative": False, "is_processing": True,
     "params": {"temperature": 0.7, "n_predict": -1}, "n_past": 300,
     "next_token": {"has_next_token": True, "n_remain": -1, "n_decoded": 12}},
    {"id": 1, "id_task": -1, "n_ctx": 4096, "speculative": False, "is_processing": False,
     "params": {"temperature": 0.8}, "n_past": 0, "next_token": {"n_decoded": 0}},
]

OLLAMA_PS = {"models": [
    {"name": "other:7b", "model": "other:7b", "size": 5000000000, "size_vram": 1000,
     "digest": "ab12", "expires_at": "2025-01-01T00:00:00Z"},
    {"name": "fault-model:latest", "model": "fault-model:latest", "size": 3338801804,
     "size_vram": 3338801804, "digest": "cd34", "details": {"family": "llama",
     "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
     "expires_at": "2025-01-01T00:05:00Z", "context_length": 8192},
]}

NAN_METRICS = b"""# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="fault-model"} NaN
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="fault-model"} +Inf
process_resident_memory_bytes 1.2e+09
"""

ROOT_BODIES = {  # (prefix, path) -> body
    ("/vllm", "/metrics"): (VLLM_METRICS, "text/plain; version=0.0.4; charset=utf-8"),
    ("/vllmv1", "/metrics"): (VLLM_V1_METRICS, "text/plain; version=0.0.4; charset=utf-8"),
    ("/llama", "/metrics"): (LLAMA_METRICS, "text/plain; version=0.0.4"),
    ("/llama", "/slots"): (json.dumps(LLAMA_SLOTS).encode(), "application/json"),
    ("/ollama", "/api/ps"): (json.dumps(OLLAMA_PS).encode(), "application/json"),
    ("/nan", "/metrics"): (NAN_METRICS, "text/plain; version=0.0.4"),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the test's output is the test's
        pass

    # ---- writing ----
    def send_body(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, obj):
        self.send_body(status, json.dumps(obj).encode())

    def start_stream(self, chunked=True):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.chunked = chunked

    def put(self, data):
        if self.chunked:
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self.wfile.write(data)
        self.wfile.flush()

    def end_stream(self):
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def hang_up(self):
        """Closes the connection at once, mid-whatever."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- requests ----
    def do_GET(self):
        for (prefix, leaf), (body, ctype) in ROOT_BODIES.items():
            if self.path == prefix + leaf:
                return self.send_body(200, body, ctype)
        if not self.path.endswith("/v1/models"):
            return self.send_json(404, {"detail": "Not Found"})
        prefix = self.path[: -len("/v1/models")]
        if prefix == "/empty":
            return self.send_json(200, {"object": "list", "data": []})
        if prefix == "/html":
            return self.send_body(200, b"<html>hello</html>", "text/html")
        self.send_json(200, MODELS)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if not self.path.endswith("/v1/chat/completions"):
            return self.send_json(404, {"detail": "Not Found"})
        try:
            req = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {"message": "request is not JSON"}})
        users = [m.get("content", "") for m in req.get("messages", []) if m.get("role") == "user"]
        words = users[-1].split() if users else []
        scenario = words[0] if words else "good"
        fn = getattr(self, "play_" + scenario, self.play_good)
        try:
            fn(req, raw)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- the good server ----
    def play_good(self, req, raw):
        self.start_stream()
        for piece in [b"Hello", b",", b" w", b"orld ", b"\xc3", b"\xa9", b"!"]:
            self.put(delta_raw("content", piece))  # "\xc3" "\xa9": one character split in two
        self.put(finish("stop"))
        self.put(usage())
        self.put(DONE)
        self.end_stream()

    def play_echo(self, req, raw):
        """Replies with the request body it received, in pieces."""
        self.start_stream()
        text = raw.decode()
        for i in range(0, len(text), 64):
            self.put(delta(text[i:i + 64]))
        self.put(finish("stop"))
        self.put(usage())
        self.put(DONE)
        self.end_stream()

    def play_whoami(self, req, raw):
        self.start_stream()
        self.put(delta("auth=" + (self.headers.get("Authorization") or "none")))
        self.put(finish("stop"))
        self.put(DONE)
        self.end_stream()

    def play_think(self, req, raw):
        self.start_stream()
        self.put(delta("Let me", "reasoning_content"))
        self.put(delta(" think.", "reasoning_content"))
        self.put(delta("Answer."))
        self.put(finish("stop"))
        self.put(usage())
        self.put(DONE)
        self.end_stream()

    def play_badutf8(self, req, raw):
        self.start_stream()
        self.put(delta_raw("content", b"a\xffb\xe2\x82c"))
        self.put(finish("stop"))
        self.put(DONE)
        self.end_stream()

    def play_flood(self, req, raw):
        """N one-word tokens (the second word, default 20000) as fast as they go."""
        words = [m.get("content", "") for m in req["messages"] if m.get("role") == "user"][-1].split()
        n = int(words[1]) if len(words) > 1 else 20000
        self.start_stream()
        one = delta("tok ")
        for i in range(0, n, 500):
            self.put(one * min(500, n - i))
        self.put(finish("stop"))
        self.put(DONE)
        self.end_stream()

    def play_endless(self, req, raw):
        """A reply that never ends by itself: max_tokens, else a cancel, stops it."""
        self.start_stream()
        limit = req.get("max_tokens") or 3000
        for i in range(limit):
            self.put(delta("tok "))
            time.sleep(0.01)
        self.put(finish("length"))
        self.put(DONE)
        self.end_stream()

    # ---- failures ----
    def play_e401(self, req, raw):
        # a careless server that quotes the header back: the client must scrub it
        auth = self.headers.get("Authorization") or ""
        self.send_json(401, {"error": {"message": "Invalid API key: " + auth}})

    def play_e429(self, req, raw):
        self.send_json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}})

    def play_e500json(self, req, raw):
        msg = "CUDA out of memory\n\x1b[31m at layer 3 " + "x" * 500
        self.send_json(500, {"error": {"message": msg, "type": "internal"}})

    def play_e500plain(self, req, raw):
        self.send_body(500, b"upstream exploded\r\n", "text/plain")

    def play_e500empty(self, req, raw):
        self.send_body(500, b"", "text/plain")

    def play_redirect(self, req, raw):
        self.send_body(307, b"", "text/plain",
                       [("Location", "http://elsewhere.invalid/v1/chat/completions")])

    def play_html(self, req, raw):
        self.send_body(200, b"<html>not an API</html>", "text/html")

    def play_badjson(self, req, raw):
        self.start_stream()
        self.put(delta("partial"))
        self.put(b"data: {not json\n\n")
        self.put(DONE)
        self.end_stream()

    def play_errevent(self, req, raw):
        self.start_stream()
        self.put(delta("partial"))
        self.put(event({"error": {"message": "engine died", "code": 500}}))
        self.end_stream()

    def play_longline(self, req, raw):
        self.start_stream()
        self.put(delta("partial"))
        block = b"x" * 65536
        self.put(b"data: ")
        for _ in range(160):  # 10 MiB without a line end
            self.put(block)
        self.put(b"\n\n")
        self.end_stream()

    def play_midstream(self, req, raw):
        """Chunked, and the connection drops before the last chunk."""
        self.start_stream()
        self.put(delta("partial"))
        self.put(delta(" text"))
        self.hang_up()

    def play_midclose(self, req, raw):
        """Close-delimited: a clean end of the body, but the reply never finished."""
        self.start_stream(chunked=False)
        self.put(delta("partial"))
        self.put(delta(" text"))
        self.hang_up()

    def play_silent(self, req, raw):
        """Accepts, reads the request, never answers (until the client leaves)."""
        end = time.time() + 10
        while time.time() < end:
            r, _, _ = select.select([self.connection], [], [], 0.1)
            if r and not self.connection.recv(1, socket.MSG_PEEK):
                break
        self.hang_up()

    def play_hangup(self, req, raw):
        self.hang_up()


def blackhole():
    """A listening socket whose accept queue is full: new SYNs are dropped."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(s.getsockname())
        except (BlockingIOError, OSError):
            pass
        fillers.append(c)
    time.sleep(0.05)
    return s, fillers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--lifetime", type=float, default=300)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    hole, fillers = blackhole()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sys.stdout.write("%d %d\n" % (srv.server_address[1], hole.getsockname()[1]))
    sys.stdout.flush()
    end = time.time() + a.lifetime
    while time.time() < end:
        r, _, _ = select.select([sys.stdin], [], [], max(0.0, min(1.0, end - time.time())))
        if r and not os.read(sys.stdin.fileno(), 4096):
            break
    os._exit(0)


if __name__ == "__main__":
    main()
