"""Show what is running: the collector, the agent (spool depth, lag, connected clients) and any
batches waiting in SDK spools for `runwire sync`. Exits 1 when the collector or the agent is down."""

from __future__ import annotations

import argparse
import json

from runwire._transports.channel import ClientSecurity
from runwire._transports.collector import CollectorClient
from runwire._transports.sdk_spool import orphan_spools
from runwire.cli._common import add_endpoint_arguments, agent_status, endpoint_from_args
from runwire.exceptions import ServiceUnavailableError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _size(n: int) -> str:
    """Bytes in binary units: 1.2 GiB, 512 KiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


CAP_POLICY = "policy: SDKs keep their points in their own spool until there is room"


def spool_line(a: dict) -> str:
    """`spool 1.2 GiB of 10.0 GiB (12%), peak 3.1 GiB, full 3× for 41 s — policy: …`"""  # noqa: RUF002
    cap = a["spool_max_bytes"]
    pct = 100 * a["spool_bytes"] / cap if cap else 0.0
    text = f"spool {_size(a['spool_bytes'])} of {_size(cap)} ({pct:.0f}%), peak {_size(a['spool_peak_bytes'])}, "
    if a["spool_full_count"]:
        text += f"full {a['spool_full_count']}× for {a['spool_full_seconds']:.0f} s"  # noqa: RUF001
    else:
        text += "never full"
    if a["spool_full"]:
        text += " — FULL NOW: not reading from SDKs"
    text += f" — {CAP_POLICY}"
    return text


def run(args: argparse.Namespace) -> int:
    endpoint = endpoint_from_args(args)
    report: dict = {"config": endpoint.config_path, "collector": {"address": endpoint.collector}}
    ok = True
    client = CollectorClient(endpoint.collector, security=ClientSecurity.from_endpoint(endpoint))
    try:
        st = client.status()
        report["collector"].update(
            up=True, version=st.version, store=st.store, http=st.http_address, ingest_streams=st.ingest_streams,
            batches_committed=st.batches_committed, duplicate_batches=st.duplicate_batches,
            points_committed=st.points_committed, runs=st.runs, uptime_s=round(st.uptime_seconds, 1), pid=st.pid,
        )  # fmt: skip
    except ServiceUnavailableError as e:
        ok = False
        report["collector"].update(up=False, error=str(e))
    except Exception as e:  # it answered, and refused (a token) or failed the call
        ok = False
        report["collector"].update(up=True, refused=True, error=str(e))
    finally:
        client.close()
    report["agent"] = {"socket": endpoint.agent_socket}  # "clients" leaves out this query's own connection
    if endpoint.agent_socket:
        try:
            a = agent_status(endpoint.agent_socket)
            report["agent"].update(
                up=True, agent_id=a.agent_id, collector=a.collector, collector_connected=a.collector_connected,
                clients=max(0, a.clients - 1), spool_records=a.spool_records, spool_bytes=a.spool_bytes,
                lag_s=round(a.oldest_unacked_age_seconds, 3), batches_received=a.batches_received,
                points_received=a.points_received, frames_rejected=a.frames_rejected, pid=a.pid,
                uptime_s=round(a.uptime_seconds, 1), uploads_pending=a.uploads_pending,
                uploads_bytes=a.uploads_bytes, files_committed=a.files_committed, spool_max_bytes=a.spool_max_bytes,
                spool_full=a.spool_full, spool_full_count=a.spool_full_count,
                spool_full_seconds=round(a.spool_full_seconds, 3), spool_peak_bytes=a.spool_peak_bytes,
                spool_corrupt_records=a.spool_corrupt_records, collector_down_s=round(a.collector_down_seconds, 3),
                socket_mode=f"{a.socket_mode:04o}", socket_group=a.socket_group or None,
                collectors=list(a.collectors), collector_addresses=list(a.collector_addresses),
                streams={s.role: {"collector": s.address, "connected": s.connected, "failovers": s.failovers}
                         for s in a.collector_links},
            )  # fmt: skip
        except Exception as e:
            ok = False
            report["agent"].update(up=False, error=str(e))
    else:
        ok = False
        report["agent"].update(up=False, error="no agent socket configured")
    spools = list(orphan_spools(endpoint.spool_dir()))
    report["sdk_spool"] = {
        "folder": str(endpoint.spool_dir()),
        "files": len(spools),
        "bytes": sum(p.stat().st_size for p in spools),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if ok else 1
    c, a, s = report["collector"], report["agent"], report["sdk_spool"]
    print(f"config     {report['config'] or '(environment)'}")
    if c.get("refused"):
        print(f"collector  REFUSED  {c['address']}: {c['error']}")
    elif c["up"]:
        print(f"collector  up    {c['address']}  store={c['store']}  runs={c['runs']}  streams={c['ingest_streams']}")
        print(f"           committed {c['points_committed']} points in {c['batches_committed']} batches "
              f"({c['duplicate_batches']} duplicates skipped), up {c['uptime_s']} s, pid {c['pid']}")  # fmt: skip
    else:
        print(f"collector  DOWN  {c['address']}: {c['error']}")
    if a.get("up"):
        link = "connected" if a["collector_connected"] else f"NOT connected for {a['collector_down_s']:.0f} s"
        access = f"socket {a['socket_mode']}" + (f" group {a['socket_group']}" if a["socket_group"] else "")
        print(f"agent      up    {a['socket']}  ({access})  clients={a['clients']}  collector {a['collector']} {link}")
        if len(a["collector_addresses"]) > 1 or len(a["collectors"]) > 1:
            print(f"           collectors {', '.join(a['collectors'])} -> {', '.join(a['collector_addresses'])}")
        for role, st in a["streams"].items():
            state = "connected" if st["connected"] else "not connected"
            moved = f", moved {st['failovers']} times" if st["failovers"] else ""
            print(f"           {role} -> {st['collector']} {state}{moved}")
        print(f"           {spool_line(a)}")
        print(f"           {a['spool_records']} records waiting, lag {a['lag_s']} s, "
              f"received {a['points_received']} points, rejected {a['frames_rejected']} frames")  # fmt: skip
        if a["spool_corrupt_records"]:
            print(f"           CORRUPT spool records skipped: {a['spool_corrupt_records']} (see the agent's log)")
        print(f"           files {a['uploads_pending']} waiting for upload ({_mb(a['uploads_bytes'])}), "
              f"{a['files_committed']} uploaded")  # fmt: skip
    else:
        print(f"agent      DOWN  {a['socket']}: {a['error']}")
    pending = f"{s['files']} files ({_mb(s['bytes'])}) waiting for `runwire sync`" if s["files"] else "empty"
    print(f"sdk spool  {s['folder']}: {pending}")
    return 0 if ok else 1
