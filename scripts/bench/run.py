"""The benchmark's run: the parser checks, then each concurrency level in turn, with at most that many requests in
flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import httpx
from rich.progress import Progress

from planner.benchmark import (
    REASONING_CHECK_MESSAGES,
    TOOL_CHECK_MESSAGES,
    WEATHER_TOOL,
    LevelResult,
    ParserCheck,
    RequestResult,
    judge_reasoning,
    judge_tool_call,
    summarize_level,
)


def chat_body(model: str | None, messages: Sequence[dict], max_tokens: int, **extra) -> dict:
    body = {"messages": list(messages), "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    if model:
        body["model"] = model
    return body


async def run_level(target, model: str | None, conversations, concurrency: int, requests: int, max_tokens: int,
                    advance: Callable[[RequestResult], None]) -> LevelResult:
    """`requests` requests with at most `concurrency` in flight; prompts taken in turn."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[RequestResult] = []

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = chat_body(model, conversations[i % len(conversations)], max_tokens)
            result = await target.stream_chat(body)
            results.append(result)
            advance(result)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return summarize_level(concurrency, results, time.perf_counter() - started)


async def run_checks(target, model: str | None, max_tokens: int,
                     advance: Callable[[RequestResult], None]) -> list[ParserCheck]:
    """The tool-call and reasoning prompts, judged by the shape of their streamed answers."""
    tool = await target.stream_chat(chat_body(model, TOOL_CHECK_MESSAGES, max_tokens, tools=[WEATHER_TOOL],
                                              tool_choice="auto"))
    advance(tool)
    reasoning = await target.stream_chat(chat_body(model, REASONING_CHECK_MESSAGES, max_tokens))
    advance(reasoning)
    return [judge_tool_call(tool), judge_reasoning(reasoning)]


async def run_benchmark(target, args, conversations, levels: Sequence[int], progress: Progress) -> dict:
    """The whole measurement: model name, parser checks, then each level in turn."""
    outcome: dict = {"model": None, "levels": [], "checks": [], "models_in_chunks": set()}
    try:
        try:
            outcome["model"] = args.model or await target.served_model()
        except (httpx.HTTPError, ValueError) as err:
            outcome["unreachable"] = f"cannot list models at {getattr(target, 'base_url', '')}/v1/models: " \
                                     f"{type(err).__name__}: {err}"
            return outcome
        total = (0 if args.no_checks else 2) + args.requests_per_level * len(levels)
        task = progress.add_task("benchmark", total=total)

        def advance(result: RequestResult) -> None:
            if result.model:
                outcome["models_in_chunks"].add(result.model)
            progress.advance(task)

        if not args.no_checks:
            progress.update(task, description="parser checks")
            outcome["checks"] = await run_checks(target, outcome["model"], args.max_tokens, advance)
        for level in levels:
            progress.update(task, description=f"concurrency {level}")
            outcome["levels"].append(await run_level(target, outcome["model"], conversations, level,
                                                     args.requests_per_level, args.max_tokens, advance))
    finally:
        await target.close()
    return outcome

