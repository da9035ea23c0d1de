"""The LangGraph side of `make bench`: the same work as Noukai's bench flows, as LangGraph graphs.

- `three_steps` mirrors `bench/flows/bench-3step.yaml`: three nodes in a row, each asking a chat model
  to echo its prompt (13 words of its own, then the input's `message`) back one word per chunk.
- `long` mirrors `bench/flows/bench-long.yaml`: one node echoing the input's `message`.

The model is `EchoChatModel`, a fake streaming chat model with no waits, splitting words exactly as
Noukai's `builtin:echo` does (a word with the whitespace around it), so that with
`stream_mode=["messages-tuple", "updates"]` a run streams one `messages` event per word: the same
token count as Noukai's `step_output` events.
"""

from __future__ import annotations

import operator
import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

_CHUNK = re.compile(r"\s*\S+\s*|\s+")


def _words(messages: list[BaseMessage]) -> list[str]:
    text = messages[-1].text if messages else ""
    return _CHUNK.findall(text)


class EchoChatModel(BaseChatModel):
    """Streams the last message back, one word per chunk, and no more: langchain-core reports each
    chunk to the run's callbacks (LangGraph's `messages` stream among them). The last chunk says it
    is the last, so langchain-core adds no empty closing chunk (one more `messages` event)."""

    @property
    def _llm_type(self) -> str:
        return "bench-echo"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("".join(_words(messages))))])

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        words = _words(messages)
        for index, word in enumerate(words):
            last = index == len(words) - 1
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=word, chunk_position="last" if last else None)
            )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(messages)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            yield chunk


MODEL = EchoChatModel()


class State(TypedDict, total=False):
    message: str
    outputs: Annotated[dict[str, str], operator.or_]
    """Each node's answer, by node name (a node's update holds its own answer only)."""


def _echo_node(name: str, prefix: str) -> Any:
    """A node that has the model echo `prefix` + the input's message; its answer goes to `outputs`."""

    async def node(state: State) -> State:
        answer = await MODEL.ainvoke(prefix + state["message"])
        return {"outputs": {name: answer.text}}

    node.__name__ = name
    return node


def _three_steps() -> Any:
    builder = StateGraph(State)
    previous = START
    for name, ordinal in (("node1", "First"), ("node2", "Second"), ("node3", "Third")):
        prefix = f"{ordinal} step of the benchmark flow, echoing the message back word by word: "
        builder.add_node(name, _echo_node(name, prefix))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile()


def _long() -> Any:
    builder = StateGraph(State)
    builder.add_node("echo", _echo_node("echo", ""))
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile()


three_steps = _three_steps()
long = _long()
