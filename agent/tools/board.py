"""The state behind edge-watch's table, and the table itself (plain text with optional ANSI colour).

    board = Board(last=10)
    board.update(obs)                  # marks obs.duplicate / obs.stale as a side effect
    print(render(board, now=time.time(), color=False))

Pure: no terminal and no clock of its own, so a test renders recorded state. Presence follows
PROTOCOL 7: a node's newest session wins, and an `offline` record (a Will) of an older session
than the newest birth is stale and ignored.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from agent.protocol import Event, Heartbeat, Presence, RejectReport, Result

from .observe import CLEARED, Observation
from .render import clock, duration

RATE_WINDOW_S = 10.0
SEEN_RESULTS = 10_000  # (node, id, run) remembered to flag re-published results


@dataclass
class NodeView:
    node: str
    presence: Presence | None = None
    session: int = -1  # the newest session seen
    heartbeat: Heartbeat | None = None
    heartbeat_at: float | None = None  # when it was received
    last_seen: float = 0.0
    results: int = 0


@dataclass
class Board:
    last: int = 10
    nodes: dict[str, NodeView] = field(default_factory=dict)
    results: deque[tuple[float, Result]] = field(default_factory=deque)
    rejects: deque[tuple[float, RejectReport]] = field(default_factory=lambda: deque(maxlen=5))
    forged: deque[Observation] = field(default_factory=lambda: deque(maxlen=5))
    forged_total: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # verified messages by kind
    _recent: deque[tuple[float, str]] = field(default_factory=deque)  # (received, status) for rates
    _seen: OrderedDict[tuple[str, str, int], None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.results = deque(maxlen=self.last)

    def _node(self, node: str) -> NodeView:
        view = self.nodes.get(node)
        if view is None:
            view = self.nodes[node] = NodeView(node)
        return view

    def update(self, obs: Observation) -> None:
        if obs.problem == CLEARED:
            return  # shown in lines and JSON; no state to change
        if not obs.verified or obs.message is None:
            self.forged_total += 1
            self.forged.append(obs)
            return
        msg, at = obs.message, obs.received_at
        self.counts[obs.kind] += 1
        view = self._node(obs.node or "?")
        view.last_seen = max(view.last_seen, at)
        if isinstance(msg, Presence):
            if msg.session < view.session or (msg.session == view.session and msg.state == "online"
                                               and view.presence is not None
                                               and view.presence.state == "offline"):  # fmt: skip
                obs.stale = True  # a Will of an older session, or a birth replayed after its death
                return
            view.session, view.presence = msg.session, msg
        elif isinstance(msg, Heartbeat):
            view.heartbeat, view.heartbeat_at = msg, at
        elif isinstance(msg, Result):
            key = (msg.node, msg.id, msg.run)
            if key in self._seen:
                obs.duplicate = True
                return
            self._seen[key] = None
            if len(self._seen) > SEEN_RESULTS:
                self._seen.popitem(last=False)
            view.results += 1
            self.results.append((at, msg))
            self._recent.append((at, msg.status))
        elif isinstance(msg, RejectReport):
            self.rejects.append((at, msg))
        elif isinstance(msg, Event):
            pass  # counted; the lines and JSON formats show them

    def rates(self, now: float) -> dict[str, float]:
        """Results per second by status over the last RATE_WINDOW_S seconds."""
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()
        by_status = Counter(status for at, status in self._recent if at <= now)
        return {status: n / RATE_WINDOW_S for status, n in sorted(by_status.items())}


# --- rendering ----------------------------------------------------------------------------------------

_COLORS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}
_STATUS_COLOR = {"completed": "green", "online": "green", "running": "green", "offline": "red"}
_STATUS_COLOR.update(rejected="red", abandoned="red", expired="yellow", cancelled="yellow", draining="yellow")


def _paint(text: str, color: str | None, enabled: bool) -> str:
    if not enabled or color is None:
        return text
    return f"\x1b[{_COLORS[color]}m{text}\x1b[0m"


def _cell(text: str, width: int, color: str | None, enabled: bool) -> str:
    """`text` padded to `width` (padding outside the colour codes, so columns stay aligned)."""
    text = text if len(text) <= width else text[: width - 1] + "~"
    return _paint(text, color, enabled) + " " * (width - len(text))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _node_rows(board: Board, now: float, stale_s: float, color: bool) -> list[str]:
    widths = (16, 9, 8, 9, 9, 7, 8, 7, 10, 10, 7)
    head = (
        "node",
        "presence",
        "session",
        "hb age",
        "state",
        "queued",
        "running",
        "outbox",
        "completed",
        "rss",
    )
    rows = ["".join(_cell(h, w, "bold", color) for h, w in zip((*head, "backend"), widths, strict=True))]
    for name in sorted(board.nodes):
        view = board.nodes[name]
        state = view.presence.state if view.presence else "unknown"
        hb, age = view.heartbeat, (now - view.heartbeat_at if view.heartbeat_at is not None else None)
        silent = state == "online" and (age is None or age > stale_s)
        cells = [
            (name, None),
            (state, _STATUS_COLOR.get(state)),
            (str(view.session) if view.session >= 0 else "-", None),
            (_age(age) + (" !" if silent and age is not None else ""), "yellow" if silent else None),
            (hb.state if hb else "-", _STATUS_COLOR.get(hb.state) if hb else None),
            (str(hb.queued) if hb else "-", None),
            (str(hb.running) if hb else "-", None),
            (str(hb.outbox) if hb else "-", "yellow" if hb and hb.outbox > 100 else None),
            (str(hb.completed_total) if hb else "-", None),
            (f"{hb.rss_bytes / (1 << 20):.0f} MiB" if hb else "-", None),
            (hb.backend if hb else "-", None),
        ]
        rows.append("".join(_cell(t, w, c, color) for (t, c), w in zip(cells, widths, strict=True)))
    if not board.nodes:
        rows.append("(no agent seen yet: presence is retained, so an online agent shows at once)")
    return rows


def _result_rows(board: Board, color: bool) -> list[str]:
    widths = (10, 16, 34, 18, 11, 16)
    head = ("time", "node", "id", "kernel", "status", "duration")
    rows = ["".join(_cell(h, w, "bold", color) for h, w in zip(head, widths, strict=True))]
    for at, r in reversed(board.results):
        tail = duration(r.duration_ms) if r.ok else str((r.error or {}).get("code", ""))
        cells = [clock(at), r.node, r.id, r.kernel, r.status, tail]
        colors = [None, None, None, None, _STATUS_COLOR.get(r.status), None]
        rows.append("".join(_cell(t, w, c, color) for t, w, c in zip(cells, widths, colors, strict=True)))
    return rows


def render(board: Board, now: float, *, color: bool = False, stale_s: float = 35.0, title: str = "") -> str:
    """The whole table as text (lines without trailing newline)."""

    def bold(text: str) -> str:
        return _paint(text, "bold", color)

    rates = board.rates(now)
    total = sum(rates.values())
    out = [bold(f"edge-watch {title}".rstrip()) + f"  {clock(now)}  messages {sum(board.counts.values())}"]
    out += ["", bold("NODES"), *_node_rows(board, now, stale_s, color), ""]
    rate_text = ", ".join(f"{_paint(s, _STATUS_COLOR.get(s), color)} {v:.1f}/s" for s, v in rates.items())
    out.append(
        bold(f"RESULTS (last {RATE_WINDOW_S:.0f} s: {total:.1f}/s)") + (f"  {rate_text}" if rates else "")
    )
    out += _result_rows(board, color)
    out += ["", bold("REJECTS (tasks agents could not authenticate)")]
    for at, rep in reversed(board.rejects):
        out.append(
            f"{clock(at)}  {rep.node}  {rep.code}  kid {rep.kid or '-'}  id {rep.id or '-'}  {rep.topic}"
        )
    if not board.rejects:
        out.append("(none)")
    out += [
        "",
        _paint(f"FORGED / UNVERIFIED: {board.forged_total}", "red" if board.forged_total else None, color),
    ]
    for obs in reversed(board.forged):
        what = " ".join(p for p in (obs.kind, obs.node or "?", obs.task_id) if p)
        out.append(_paint(f"{clock(obs.received_at)}  FORGED {what}  ({obs.problem})", "red", color))
    return "\n".join(out)
