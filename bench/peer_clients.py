"""The client side of each system of the peer suite, as ``bench.load.PeerClient`` classes built in
any client process from a ``ClientSpec``: Spread's and the raw ASGI baseline's ``/raw`` API and
etcd's JSON gateway over one of two HTTP clients (the lean one of ``bench.lean_http``, or httpx for
the older series), etcd's gRPC API over grpcio, Redis over redis-py and NATS KV over nats-py."""

from __future__ import annotations

import base64
from typing import Any

from bench import etcd_grpc, lean_http
from bench.load import PeerClient

LEAN, HTTPX = "lean", "httpx"
HTTP_CLIENTS = (LEAN, HTTPX)
LABELS = {LEAN: "lean-http", HTTPX: "httpx"}
HTTP_TIMEOUT = 30.0
HTTPX_POOL = 64  # connections, as the httpx series always had (more than any concurrency measured)
OK, OK_END = 200, 300  # a write succeeded with any 2xx
NATS_BUCKET = "bench"


class HttpTransport:
    """``concurrency`` keep-alive connections to ``port``: ``request`` sends one request and
    returns ``(status, body)``. Every request carries ``headers``."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers = port, headers

    async def open(self, concurrency: int) -> None:
        raise NotImplementedError("HttpTransport subclasses must implement open()")

    async def close(self) -> None: ...

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        raise NotImplementedError("HttpTransport subclasses must implement request()")


class LeanTransport(HttpTransport):
    async def open(self, concurrency: int) -> None:
        self.client = await lean_http.Client(self.port, self.headers, concurrency).open()

    async def close(self) -> None:
        self.client.close()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        return await self.client.request(method, path, body)


class HttpxTransport(HttpTransport):
    """httpx, as the suite measured before the lean client (its figures are httpx's own limit)."""

    async def open(self, concurrency: int) -> None:
        import httpx

        limits = httpx.Limits(max_connections=HTTPX_POOL, max_keepalive_connections=HTTPX_POOL)
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            limits=limits,
            timeout=HTTP_TIMEOUT,
            headers=self.headers,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        response = await self.client.request(method, path, content=body)
        return response.status_code, response.content


TRANSPORTS: dict[str, type[HttpTransport]] = {LEAN: LeanTransport, HTTPX: HttpxTransport}


class HttpPeerClient(PeerClient):
    """A system spoken to over HTTP/1.1 with the chosen HTTP client."""

    def __init__(self, port: int, http_client: str, headers: dict[str, str] | None = None) -> None:
        self.transport = TRANSPORTS[http_client](port, headers or {})
        self.label = LABELS[http_client]

    async def open(self, concurrency: int) -> None:
        await self.transport.open(concurrency)

    async def close(self) -> None:
        await self.transport.close()

    async def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """The body of a 2xx answer; any other status raises."""
        status, answer = await self.transport.request(method, path, body)
        if not OK <= status < OK_END:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {answer[:200]!r}")
        return answer


class RawApiClient(HttpPeerClient):
    """Spread's raw API (and the raw ASGI baseline, sent the very same requests): PUT is a POST of
    the value to ``/raw/<key>``, GET a GET of it."""

    async def put(self, key: str, value: bytes) -> None:
        await self.call("POST", f"/raw/{key}", value)

    async def get(self, key: str) -> None:
        await self.call("GET", f"/raw/{key}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EtcdGatewayClient(HttpPeerClient):
    """etcd's HTTP JSON gateway (``/v3/kv/put``, ``/v3/kv/range``; keys and values in base64)."""

    async def put(self, key: str, value: bytes) -> None:
        body = f'{{"key":"{_b64(key.encode())}","value":"{_b64(value)}"}}'.encode()
        await self.call("POST", "/v3/kv/put", body)

    async def get(self, key: str) -> None:
        answer = await self.call("POST", "/v3/kv/range", f'{{"key":"{_b64(key.encode())}"}}'.encode())
        if b'"kvs"' not in answer:
            raise LookupError(f"etcd has no {key}")


class EtcdGrpcClient(PeerClient):
    """etcd's native gRPC KV API (grpcio, one HTTP/2 channel as etcd's own client uses)."""

    label = "grpcio"

    def __init__(self, port: int) -> None:
        self.kv = etcd_grpc.KV(port)

    async def open(self, concurrency: int) -> None:
        await self.kv.open()

    async def close(self) -> None:
        await self.kv.close()

    async def put(self, key: str, value: bytes) -> None:
        await self.kv.put(key.encode(), value)

    async def get(self, key: str) -> None:
        if not await self.kv.range(key.encode()):
            raise LookupError(f"etcd has no {key}")


class RedisClient(PeerClient):
    """redis-py's asyncio client, a pool with a connection per concurrency slot."""

    label = "redis-py"

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self, concurrency: int) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis(host="127.0.0.1", port=self.port, max_connections=concurrency)

    async def close(self) -> None:
        await self.client.aclose()

    async def put(self, key: str, value: bytes) -> None:
        await self.client.set(key, value)

    async def get(self, key: str) -> None:
        if await self.client.get(key) is None:
            raise LookupError(f"redis has no {key}")


class NatsKVClient(PeerClient):
    """nats-py's JetStream KV (one connection, as nats-py multiplexes every request over it)."""

    label = "nats-py"

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self, concurrency: int = 1) -> None:
        import nats

        self.connection: Any = await nats.connect(f"nats://127.0.0.1:{self.port}")
        self.kv = await self.connection.jetstream().create_key_value(bucket=NATS_BUCKET)

    async def close(self) -> None:
        await self.connection.close()

    async def put(self, key: str, value: bytes) -> None:
        await self.kv.put(key.replace("/", "."), value)

    async def get(self, key: str) -> None:
        await self.kv.get(key.replace("/", "."))
