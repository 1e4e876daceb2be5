"""Where the benchmark's requests go: an OpenAI-compatible server over HTTP, or a SageMaker endpoint through
sagemaker-runtime's streamed call. Each request is measured and never retried."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from planner.benchmark import (
    RequestResult,
    SseLineSplitter,
    StreamAccumulator,
    failed_request,
)

ERROR_BODY_LIMIT = 2048  # bytes of an error response kept for the report


class OpenAITarget:
    """An OpenAI-compatible server (vLLM, NIM): POST /v1/chat/completions with stream=true, GET /v1/models."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float, max_connections: int):
        self.base_url = base_url
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False)

    def describe(self) -> dict:
        return {"kind": "openai", "url": self.base_url}

    async def served_model(self) -> str:
        """The model name the server reports at /v1/models (the first one listed)."""
        response = await self._client.get("/v1/models")
        response.raise_for_status()
        models = response.json().get("data") or []
        if not models or not models[0].get("id"):
            raise ValueError("/v1/models listed no model")
        return str(models[0]["id"])

    async def stream_chat(self, body: dict) -> RequestResult:
        """Send one streamed chat request and measure it; never raises for a failed request, never retries."""
        started = time.perf_counter()
        accumulator = StreamAccumulator()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        detail = await _bounded_body(response)
                        return failed_request(f"http {response.status_code}", detail, response.status_code,
                                              time.perf_counter() - started)
                    async for line in response.aiter_lines():
                        accumulator.feed_line(line, time.perf_counter() - started)
        except TimeoutError:
            return _partial(accumulator, started, "timeout", f"no complete answer within {self.timeout_s:g} s")
        except httpx.TimeoutException as err:
            return _partial(accumulator, started, "timeout", f"{type(err).__name__} after {self.timeout_s:g} s")
        except httpx.HTTPError as err:
            return _partial(accumulator, started, "connection error", f"{type(err).__name__}: {err}")
        return accumulator.finish(time.perf_counter() - started)

    async def close(self) -> None:
        await self._client.aclose()


class SageMakerTarget:
    """A SageMaker real-time endpoint whose container speaks the OpenAI chat schema (JumpStart vLLM/LMI), streamed
    with sagemaker-runtime InvokeEndpointWithResponseStream. The boto3 call blocks, so requests run in threads."""

    def __init__(self, endpoint_name: str, client, timeout_s: float, max_workers: int):
        self.endpoint_name = endpoint_name
        self.timeout_s = timeout_s
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bench-sagemaker")

    def describe(self) -> dict:
        return {"kind": "sagemaker", "endpoint": self.endpoint_name, "region": self._client.meta.region_name}

    async def served_model(self) -> str | None:
        return None  # SageMaker has no /v1/models; the model name is taken from the streamed chunks

    async def stream_chat(self, body: dict) -> RequestResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.stream_chat_blocking, body)

    def stream_chat_blocking(self, body: dict) -> RequestResult:
        """One streamed request through sagemaker-runtime, measured like the HTTP path."""
        from botocore.exceptions import BotoCoreError, ClientError

        started = time.perf_counter()
        accumulator, splitter = StreamAccumulator(), SseLineSplitter()
        try:
            response = self._client.invoke_endpoint_with_response_stream(
                EndpointName=self.endpoint_name, Body=json.dumps(body).encode(), ContentType="application/json",
                Accept="text/event-stream")
            for event in response["Body"]:
                now = time.perf_counter() - started
                if "PayloadPart" in event:
                    for line in splitter.feed(event["PayloadPart"].get("Bytes", b"")):
                        accumulator.feed_line(line, now)
                elif "ModelStreamError" in event or "InternalStreamFailure" in event:
                    failure = event.get("ModelStreamError") or event.get("InternalStreamFailure") or {}
                    return _partial(accumulator, started, "stream error", str(failure.get("Message", failure)))
                if now > self.timeout_s:
                    return _partial(accumulator, started, "timeout", f"no complete answer within {self.timeout_s:g} s")
            for line in splitter.flush():
                accumulator.feed_line(line, time.perf_counter() - started)
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = err.response.get("Error", {}).get("Code", "ClientError")
            kind = f"http {status}" if status else code
            return failed_request(kind, f"{code}: {err.response.get('Error', {}).get('Message', '')}"[:300], status,
                                  time.perf_counter() - started)
        except BotoCoreError as err:
            kind = "timeout" if "timeout" in type(err).__name__.lower() else "connection error"
            return _partial(accumulator, started, kind, f"{type(err).__name__}: {err}")
        return accumulator.finish(time.perf_counter() - started)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _partial(accumulator: StreamAccumulator, started: float, kind: str, detail: str) -> RequestResult:
    """A request cut short: it counts as an error; the tokens that did arrive are kept for the record."""
    measured = accumulator.finish(time.perf_counter() - started)
    if measured.first_token_s is None:
        return failed_request(kind, detail, None, measured.latency_s)
    return RequestResult(**{**measured.__dict__, "ok": False, "error_kind": kind, "error": detail})


async def _bounded_body(response: httpx.Response) -> str:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT].decode("utf-8", "replace").strip()[:300]


def sagemaker_runtime_client(region: str | None, timeout_s: float, max_connections: int):
    """A sagemaker-runtime client from the standard credential chain (scripts/aws), with no automatic retries: a
    benchmark counts a refused request, it does not hide it."""
    from botocore.config import Config

    from scripts.aws import AwsClients, session_for

    config = Config(read_timeout=timeout_s, connect_timeout=min(timeout_s, 10.0),
                    retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=max_connections)
    return AwsClients(session_for(region), config=config).client("sagemaker-runtime")
