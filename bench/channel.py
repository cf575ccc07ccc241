"""Cost of the token interceptor on the agent's ingest-style stream (asyncio stream-stream, write()/read()).

Not a test (never timed assertions in tests): run it and read the figures.

    .venv/bin/python bench/channel.py [--messages 20000] [--size 256]

An echo server in this process; the client writes `--messages` requests on one stream from one task
while another reads the replies (as agent/sender.py does), on three channels: plaintext with the
token as per-call metadata (what the sender did before), plaintext with the token interceptor of
`runwire._transports.channel`, and TLS with the token as call credentials. Prints µs per message
(best and median of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runwire._transports.channel import ClientSecurity, open_aio_channel

TOKEN = "rwt_0123456789ab_" + "x" * 43
METHOD = "/bench.Echo/Stream"


async def serve(tls_files: tuple[bytes, bytes] | None) -> tuple[grpc.aio.Server, int]:
    async def echo(requests, context):
        async for r in requests:
            yield r

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(echo)}),)
    )
    if tls_files is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([tls_files]))
    await server.start()
    return server, port


async def one_stream(channel: grpc.aio.Channel, n: int, payload: bytes, metadata) -> float:
    call = channel.stream_stream(METHOD)(metadata=metadata)
    await call.wait_for_connection()

    async def write() -> None:
        for _ in range(n):
            await call.write(payload)
        await call.done_writing()

    async def read() -> int:
        got = 0
        while (await call.read()) is not grpc.aio.EOF:
            got += 1
        return got

    t0 = time.perf_counter()
    _, got = await asyncio.gather(write(), read())
    elapsed = time.perf_counter() - t0
    assert got == n
    return elapsed / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=256, help="bytes per message")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    import trustme

    folder = Path(tempfile.mkdtemp(prefix="rwbench-tls"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    plain, plain_port = await serve(None)
    tls, tls_port = await serve((cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes()))
    n, payload = args.messages, b"x" * args.size
    plain_target, tls_target = f"127.0.0.1:{plain_port}", f"127.0.0.1:{tls_port}"
    md = (("authorization", f"Bearer {TOKEN}"),)
    cases = [
        ("plaintext, token as per-call metadata (before)", grpc.aio.insecure_channel(plain_target), md),
        ("plaintext, no token (no interceptor)", open_aio_channel(plain_target), None),
        (
            "plaintext, token interceptor (open_aio_channel)",
            open_aio_channel(plain_target, ClientSecurity(TOKEN)),
            None,
        ),
        (
            "TLS, token as call credentials (open_aio_channel)",
            open_aio_channel(tls_target, ClientSecurity(TOKEN, str(folder / "ca.pem"))),
            None,
        ),
    ]
    print(f"asyncio stream-stream, {n:,} messages of {args.size} B, writer and reader tasks (as the agent's sender);")
    print(f"{args.rounds} rounds, the four channels taking turns in each round")
    try:
        for _, channel, metadata in cases:
            await one_stream(channel, 1000, payload, metadata)  # warm up
        results: list[list[float]] = [[] for _ in cases]
        for _ in range(args.rounds):
            for i, (_, channel, metadata) in enumerate(cases):
                results[i].append(await one_stream(channel, n, payload, metadata))
        for (name, _, _), rounds in zip(cases, results, strict=True):
            print(f"  {name:<50} best {min(rounds):6.1f}  median {statistics.median(rounds):6.1f} µs/message")
    finally:
        for _, channel, _ in cases:
            await channel.close()
        await plain.stop(None)
        await tls.stop(None)


if __name__ == "__main__":
    asyncio.run(main())
