"""Fault injection: the link between two replicating nodes is cut, both sides take writes
(conflicting ones included), the cut heals, and both nodes converge.

Three cuts, from the most real:
- A REAL NETWORK CUT. Node B runs in a network namespace of its own, reached by A over one veth
  pair (the link) and by the test over another (control). The cut replaces the queueing
  discipline of both ends of the link pair with ``blackhole``: every packet vanishes silently,
  both nodes stay up and answer the test, and nobody closes anything (TCP retransmits until the
  heal). Needs root and iproute2 (``ip netns``, ``tc``); the loopback and the machine's own
  interfaces are never touched. Skipped, saying why, where that is not available.
- B FROZEN with SIGSTOP (its connections stay open, nothing is answered) and thawed with SIGCONT:
  writes sent to B during the freeze are taken when it thaws, while the link catches up.
- B KILLED with SIGKILL and restarted: while its server is down, another process of node B (the
  Python API on B's database) writes.

The writes of each side include conflicts on the same topics: distinct dates (either side wins),
equal dates with different origins (the greater origin wins, from either side), deletions against
writes, and a write that is too_late on one side only. After the heal, within HEAL_DEADLINE, both
nodes hold for every topic the winner by (date, origin), with the same value, etag, origin and
date answered over HTTP, and each stores every event written on either side exactly once.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from spread_core.management.commands.spread_node import is_loopback
from spread_core.testing import LiveNode
from tests.e2e.cluster import (
    REPLICATION_SETTINGS,
    delete,
    link,
    query,
    start_node,
    state,
    wait_converged,
    wait_until,
    write,
)
from tests.e2e.realtime import BASE_DATE, unique_prefix
from tests.nodes import MANAGE_PY, uses_postgres
from tests.services import service_missing
from tests.settings import TEST_SECRET_KEY

pytestmark = pytest.mark.e2e

#: Bound on convergence after the heal: above the link's reconnect back-off and TCP's
#: retransmission back-off after a few seconds of silence, far above what it takes.
HEAL_DEADLINE = 60.0
#: How long the test watches a cut link carry nothing (several link heartbeats of 0.2 s).
CUT_WATCH = 1.0
#: Where a PostgreSQL server on loopback has its Unix socket (a namespace cannot reach loopback).
POSTGRES_SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")
POSTGRES_PORT = 5432
#: Held while a namespace picks its subnet and creates its interfaces (concurrent test runs).
NAMESPACE_LOCK = "/tmp/spread-test-netns.lock"
SHELL_OUTPUT_MARKER = "WRITTEN "


# ----------------------------------------------------------------------------------------------
# The writes of each side


@dataclass(frozen=True)
class Write:
    """One write (or deletion) of the plan, on side ``a`` or ``b``; ``path`` under the prefix."""

    side: str
    path: str
    origin: str
    date: int
    deleted: bool = False

    def value(self) -> str:
        return f"{self.origin}@{self.date} on {self.side}"


def at(offset: int) -> int:
    return BASE_DATE + offset


#: Before the cut, replicated both ways while the link is up.
BEFORE_CUT = [
    Write("a", "shared/late", "alice", at(1000)),
    Write("b", "b-only/0", "bob", at(10)),
    Write("a", "a-only/0", "alice", at(10)),
]
#: During the cut, on both sides.
DURING_CUT = [
    # Each side's own topics.
    *(Write("a", f"a-only/{i}", "alice", at(100 + i)) for i in range(1, 4)),
    *(Write("b", f"b-only/{i}", "bob", at(100 + i)) for i in range(1, 4)),
    # Distinct dates: B's later write wins on one topic, A's on the other.
    Write("a", "conflict/b-later", "alice", at(200)),
    Write("b", "conflict/b-later", "bob", at(300)),
    Write("a", "conflict/a-later", "bob", at(500)),
    Write("b", "conflict/a-later", "alice", at(400)),
    # Equal dates, different origins: the greater origin wins, from B on one topic, A on the other.
    Write("a", "tie/b-wins", "alice", at(600)),
    Write("b", "tie/b-wins", "bob", at(600)),
    Write("a", "tie/a-wins", "zoe", at(600)),
    Write("b", "tie/a-wins", "bob", at(600)),
    # A deletion against a write, either way.
    Write("a", "deleted/on-a", "alice", at(800), deleted=True),
    Write("b", "deleted/on-b", "bob", at(700)),
    Write("a", "deleted/on-b", "alice", at(700)),
    Write("b", "deleted/on-a", "bob", at(750)),
    Write("b", "deleted/on-b", "carol", at(900), deleted=True),
    # too_late on B only (B has A's date-1000 value from before the cut); A's newer one wins.
    Write("b", "shared/late", "bob", at(950)),
    Write("a", "shared/late", "alice", at(1100)),
]


def expected_winners(plan: list[Write], ids: dict[Write, str], prefix: str) -> dict[str, str]:
    """path → id of the event that must be current: the greatest (date, origin) per topic."""
    best: dict[str, Write] = {}
    for item in plan:
        current = best.get(item.path)
        if current is None or (item.date, item.origin.encode()) > (current.date, current.origin.encode()):
            best[item.path] = item
    return {f"{prefix}/{path}": ids[item] for path, item in best.items()}


def write_over_http(node: LiveNode, prefix: str, item: Write) -> str:
    """The id of ``item`` written to ``node`` through the raw API (cluster.write / delete)."""
    path = f"{prefix}/{item.path}"
    if item.deleted:
        return str(delete(node, path, uid=item.origin, date=item.date)["id"])
    return str(write(node, path, item.value(), uid=item.origin, date=item.date)["id"])


def write_all_over_http(node: LiveNode, prefix: str, plan: list[Write]) -> dict[Write, str]:
    return {item: write_over_http(node, prefix, item) for item in plan}


#: Run by ``manage.py shell -c`` with a node's settings and database: the writes of a JSON plan
#: through the Python API, as another process of that node would make them.
SHELL_WRITER = """
import json
from spread_core import api
ids = []
for path, value, origin, date, deleted in json.loads({plan!r}):
    if deleted:
        ids.append(api.delete(path, origin=origin, date=date)["id"])
    else:
        ids.append(api.post(path, value, origin=origin, date=date)["id"])
print({marker!r} + json.dumps(ids))
"""


def write_all_through_the_python_api(node: LiveNode, prefix: str, plan: list[Write]) -> dict[Write, str]:
    """The ids of ``plan`` written to the node's database by a process of its own (not its server)."""
    rows = [[f"{prefix}/{i.path}", i.value(), i.origin, i.date, i.deleted] for i in plan]
    output = node.manage(
        "shell", "-c", SHELL_WRITER.format(plan=json.dumps(rows), marker=SHELL_OUTPUT_MARKER)
    )
    line = next(line for line in output.splitlines() if line.startswith(SHELL_OUTPUT_MARKER))
    return dict(zip(plan, json.loads(line[len(SHELL_OUTPUT_MARKER) :]), strict=True))


def on(side: str, plan: list[Write]) -> list[Write]:
    return [item for item in plan if item.side == side]


# ----------------------------------------------------------------------------------------------
# Checks


def answer(node: LiveNode, path: str) -> tuple[int, bytes, str | None, str | None, str | None]:
    """What a reader of ``path`` gets from the node: status, value, ETag, From, X-Spread-Etag."""
    response = httpx.get(f"{node.url}/raw/{path}", timeout=30)
    headers = response.headers
    value = response.content if response.status_code == 200 else b""
    return response.status_code, value, headers.get("etag"), headers.get("from"), headers.get("x-spread-etag")


def stored_event_ids(node: LiveNode) -> Counter[str]:
    return Counter(row[0] for row in query(node, "SELECT event_id FROM spread_core_event"))


def assert_converged_on_the_winners(
    a: LiveNode, b: LiveNode, prefix: str, plan: list[Write], ids: dict[Write, str]
) -> None:
    winners = expected_winners(plan, ids, prefix)
    converged = wait_converged([a, b], prefix, deadline=HEAL_DEADLINE)
    assert converged == winners, {
        p: (converged.get(p), w) for p, w in winners.items() if converged.get(p) != w
    }
    by_id = {event_id: item for item, event_id in ids.items()}
    for path, event_id in winners.items():
        on_a, on_b = answer(a, path), answer(b, path)
        assert on_a == on_b, (path, on_a, on_b)
        winner = by_id[event_id]
        if winner.deleted:
            assert on_a[0] == 404, (path, on_a)
        else:
            assert on_a == (200, winner.value().encode(), f'"{event_id}"', winner.origin, f'"{winner.date}"')
    # Every event of either side, the losers and the too_late one included, is stored exactly once
    # on each node.
    every_event = Counter(ids.values())
    assert len(every_event) == len(plan)
    for node in (a, b):
        assert stored_event_ids(node) == every_event, node.env["SPREAD_NODE_NAME"]


# ----------------------------------------------------------------------------------------------
# A node in a network namespace of its own


def postgres_url_for_a_namespace(url: str) -> str:
    """The same PostgreSQL database through the server's Unix socket: a namespace has its own
    loopback, but shares the file system. Skips the test when the socket is not found."""
    parts = urlsplit(url)
    port = parts.port or POSTGRES_PORT
    if not parts.hostname or not is_loopback(parts.hostname):
        return url  # a server elsewhere, or already a socket: reachable from the namespace too
    for directory in POSTGRES_SOCKET_DIRS:
        if os.path.exists(f"{directory}/.s.PGSQL.{port}"):
            user = f"{parts.username}@" if parts.username else ""
            netloc = f"{user}{quote(directory, safe='')}:{port}"
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    pytest.skip(f"no Unix socket of the PostgreSQL server at {url}: a namespaced node could not reach it")


class Namespace:
    """A network namespace joined to the host by two veth pairs, each its own /30 subnet:
    ``control`` (the test reaches the namespaced node there) and ``link`` (its peer does)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"spread-{tag}"
        self.control = (f"sp{tag}c0", f"sp{tag}c1")
        self.link = (f"sp{tag}l0", f"sp{tag}l1")
        self.control_hosts = ("", "")
        self.link_hosts = ("", "")

    def create(self) -> None:
        with open(NAMESPACE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            third = free_octet()
            self.control_hosts = (f"10.231.{third}.1", f"10.231.{third}.2")
            self.link_hosts = (f"10.231.{third}.5", f"10.231.{third}.6")
            self._create()

    def _create(self) -> None:
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        for (outside, inside), (outside_host, inside_host) in (
            (self.control, self.control_hosts),
            (self.link, self.link_hosts),
        ):
            ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", self.name)
            ip("addr", "add", f"{outside_host}/30", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", self.name, "addr", "add", f"{inside_host}/30", "dev", inside)
            ip("-n", self.name, "link", "set", inside, "up")

    def cut(self) -> None:
        """Drop every packet of the link pair, both ways, without a word to either end."""
        tc("qdisc", "add", "dev", self.link[0], "root", "blackhole")
        tc("-n", self.name, "qdisc", "add", "dev", self.link[1], "root", "blackhole")

    def heal(self) -> None:
        tc("qdisc", "del", "dev", self.link[0], "root")
        tc("-n", self.name, "qdisc", "del", "dev", self.link[1], "root")

    def delete(self) -> None:
        """Remove the namespace and both pairs (after the processes inside have ended)."""
        for outside in (self.control[0], self.link[0]):
            subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=True)


def tc(*args: str) -> None:
    subprocess.run(["tc", *args], capture_output=True, check=True)


def free_octet() -> int:
    """A third octet for 10.231.X.0/24 that no interface of the host uses yet."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    candidates = [n for n in range(1, 255) if f"10.231.{n}." not in taken]
    return random.choice(candidates)


class NamespacedNode(LiveNode):
    """A ``spread_node`` process inside a namespace, listening on every address there; ``url`` is
    at ``host`` (the control address), ``seen_at(host)`` is the same node at another address."""

    def __init__(self, env: dict[str, str], namespace: Namespace, log_path: Path) -> None:
        super().__init__(MANAGE_PY, env, log_path=log_path)
        self.namespace = namespace
        self.host = namespace.control_hosts[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> NamespacedNode:
        command = ["ip", "netns", "exec", self.namespace.name, sys.executable, self.manage_py]
        command += ["spread_node", "--bind", f"0.0.0.0:{self.port}"]
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:  # `ip netns exec` execs: the process is the node
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=MANAGE_PY.parent
            )
        self.wait_ready()
        return self

    def seen_at(self, host: str) -> NamespacedNode:
        view = copy.copy(self)
        view.host = host
        return view


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")):
        service_missing("a real network cut needs root and iproute2 (ip, tc)")
    space = Namespace()
    try:
        try:
            space.create()
            space.cut()  # the blackhole qdisc exists in this kernel
            space.heal()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"network namespaces or the blackhole qdisc are not usable here: {exc.stderr!r}")
        yield space
    finally:
        space.delete()


@pytest.fixture
def namespaced_node(
    namespace: Namespace, fresh_database_url: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[[str], NamespacedNode]]:
    """Start a replication node inside ``namespace`` with a new database (stopped after the test,
    before the namespace is removed)."""
    started: list[NamespacedNode] = []

    def start(name: str) -> NamespacedNode:
        url = fresh_database_url(name.replace("-", "_"))
        env = {
            "DATABASE_URL": postgres_url_for_a_namespace(url) if uses_postgres() else url,
            "SECRET_KEY": TEST_SECRET_KEY,
            "SPREAD_NODE_NAME": name,
            "DJANGO_SETTINGS_MODULE": REPLICATION_SETTINGS,
            "DEBUG": "0",
        }
        node = NamespacedNode(env, namespace, tmp_path / f"{name}.log")
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.kill()


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state ``T`` in /proc)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


# ----------------------------------------------------------------------------------------------
# Tests


def test_nodes_cut_apart_by_the_network_take_writes_on_both_sides_and_converge_once_healed(
    make_node: Callable[..., LiveNode],
    namespace: Namespace,
    namespaced_node: Callable[[str], NamespacedNode],
) -> None:
    a = start_node(make_node, "cut-a")
    b = namespaced_node("cut-b")
    p = unique_prefix("cut")
    link(a, b.seen_at(namespace.link_hosts[1]), p)  # A reaches B over the link pair only
    ids = write_all_over_http(a, p, on("a", BEFORE_CUT)) | write_all_over_http(b, p, on("b", BEFORE_CUT))
    wait_converged([a, b], p)

    namespace.cut()
    try:
        ids |= write_all_over_http(a, p, on("a", DURING_CUT))
        ids |= write_all_over_http(b, p, on("b", DURING_CUT))
        # The cut is real: several link heartbeats later, neither side has the other's writes.
        time.sleep(CUT_WATCH)
        assert f"{p}/b-only/1" not in state(a, p)
        assert f"{p}/a-only/1" not in state(b, p)
    finally:
        namespace.heal()

    assert_converged_on_the_winners(a, b, p, BEFORE_CUT + DURING_CUT, ids)


def test_a_frozen_peer_takes_the_writes_sent_to_it_when_thawed_and_both_converge(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "freeze-a"), start_node(make_node, "freeze-b")
    p = unique_prefix("freeze")
    link(a, b, p)
    ids = write_all_over_http(a, p, on("a", BEFORE_CUT)) | write_all_over_http(b, p, on("b", BEFORE_CUT))
    wait_converged([a, b], p)

    assert b.process is not None
    pid = b.process.pid
    with ThreadPoolExecutor(1) as pool:
        b.process.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: stopped(pid), HEAL_DEADLINE, lambda: "B did not stop")
            to_b = pool.submit(write_all_over_http, b, p, on("b", DURING_CUT))
            ids |= write_all_over_http(a, p, on("a", DURING_CUT))
            assert not to_b.done(), "B answered while frozen"
            assert f"{p}/a-only/1" not in state(b, p)
        finally:
            b.process.send_signal(signal.SIGCONT)
        ids |= to_b.result(timeout=HEAL_DEADLINE)

    assert_converged_on_the_winners(a, b, p, BEFORE_CUT + DURING_CUT, ids)


def test_a_killed_peer_restarts_and_merges_what_both_sides_wrote_meanwhile(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "killed-a"), start_node(make_node, "killed-b")
    p = unique_prefix("killed")
    link(b, a, p)  # B's connector opens the link: it comes back with B
    ids = write_all_over_http(a, p, on("a", BEFORE_CUT)) | write_all_over_http(b, p, on("b", BEFORE_CUT))
    wait_converged([a, b], p)

    b.kill()
    ids |= write_all_over_http(a, p, on("a", DURING_CUT))
    ids |= write_all_through_the_python_api(b, p, on("b", DURING_CUT))
    b.start()

    assert_converged_on_the_winners(a, b, p, BEFORE_CUT + DURING_CUT, ids)
