"""Log lines: JSON with task id and trace (from `extra=` or the task context, per thread), text for a
terminal, `auto` choosing by whether stderr is a terminal."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from agent.node.config import build_config
from agent.node.observe.logs import setup_logging, task_context, task_extra, wants_json

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
MINIMAL = {"agent": {"node": "node-7"}, "security": {"signing_key": "k", "trust_store": "t"}}


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _setup(fmt: str, stream: io.StringIO) -> logging.Logger:
    config = build_config({**MINIMAL, "log": {"format": fmt, "level": "debug"}}, environ={})
    setup_logging(config, stream)
    return logging.getLogger("agent.test")


def test_json_lines_carry_node_task_and_trace(restore_root: None) -> None:
    stream = io.StringIO()
    log = _setup("json", stream)
    log.info("plain %s", "line")
    log.warning("about a task", extra=task_extra("t-1", TRACE))
    with task_context("t-2", None):
        log.debug("inside the context")
        log.info("extra wins over the context", extra=task_extra("t-3", TRACE))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra=task_extra("t-4"))
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [d["message"] for d in docs] == [
        "plain line",
        "about a task",
        "inside the context",
        "extra wins over the context",
        "failed",
    ]
    assert all(d["node"] == "node-7" and d["logger"] == "agent.test" for d in docs)
    assert [d["level"] for d in docs] == ["info", "warning", "debug", "info", "error"]
    assert "task" not in docs[0] and "trace" not in docs[0]
    assert (docs[1]["task"], docs[1]["trace"]) == ("t-1", TRACE)
    assert docs[2]["task"] == "t-2" and "trace" not in docs[2]
    assert (docs[3]["task"], docs[3]["trace"]) == ("t-3", TRACE)
    assert docs[4]["task"] == "t-4" and "ValueError: boom" in docs[4]["exc"]


def test_the_task_context_belongs_to_its_thread(restore_root: None) -> None:
    stream = io.StringIO()
    log = _setup("json", stream)
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with task_context("theirs", TRACE):
            inside.set()
            release.wait(10)
            log.info("from the other thread")

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    log.info("from this thread")  # while the other thread is inside its context
    release.set()
    thread.join(10)
    docs = {d["message"]: d for d in map(json.loads, stream.getvalue().splitlines())}
    assert "task" not in docs["from this thread"]
    assert docs["from the other thread"]["task"] == "theirs"


def test_text_lines_tag_the_task_after_the_message(restore_root: None) -> None:
    stream = io.StringIO()
    log = _setup("text", stream)
    log.info("untagged")
    log.warning("attempt failed", extra=task_extra("t-1", TRACE))
    try:
        raise KeyError("x")
    except KeyError:
        log.exception("with a traceback", extra=task_extra("t-2"))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("INFO agent.test: untagged")
    assert lines[1].endswith(f"WARNING agent.test: attempt failed [task=t-1 trace={TRACE}]")
    assert lines[2].endswith("ERROR agent.test: with a traceback [task=t-2]")
    assert lines[3].startswith("Traceback")


def test_auto_is_json_unless_a_person_watches(restore_root: None) -> None:
    assert wants_json("auto", io.StringIO()) and not wants_json("auto", Tty())
    assert wants_json("json", Tty()) and not wants_json("text", io.StringIO())
    tty = Tty()
    _setup("auto", tty).info("hello")
    assert tty.getvalue().rstrip().endswith("INFO agent.test: hello")
    piped = io.StringIO()
    _setup("auto", piped).info("hello")
    assert json.loads(piped.getvalue())["message"] == "hello"
    assert build_config(MINIMAL, environ={}).log.format == "auto"
