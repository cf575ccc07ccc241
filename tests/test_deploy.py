"""deploy/: the Kubernetes manifests parse and hang together, the systemd units verify, and every
`--flag` they use exists in the `runwire server` / `runwire agent` parser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runwire.cli.main import build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
REQUIRED = {
    "Namespace": [],
    "ConfigMap": ["data"],
    "Secret": ["stringData"],
    "Deployment": ["spec.selector.matchLabels", "spec.template.spec.containers"],
    "DaemonSet": ["spec.selector.matchLabels", "spec.template.spec.containers"],
    "Service": ["spec.selector", "spec.ports"],
}


def _parser_flags(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {flag for action in sub.choices[command]._actions for flag in action.option_strings}


def _manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["_file"] = path.name
                docs.append(doc)
    return docs


def _get(doc: dict, dotted: str):
    value = doc
    for part in dotted.split("."):
        value = value[part]
    return value


def test_every_manifest_parses_with_its_kind_and_required_fields():
    docs = _manifests()
    assert {d["kind"] for d in docs} == set(REQUIRED)
    for doc in docs:
        where = f"{doc['_file']} {doc['kind']}"
        assert doc["apiVersion"] in ("v1", "apps/v1"), where
        assert doc["metadata"]["name"], where
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "runwire", where
        for field in REQUIRED[doc["kind"]]:
            assert _get(doc, field), f"{where}: {field} missing"


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_workloads_reference_what_exists():
    docs = _manifests()
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    secret = next(d for d in docs if d["kind"] == "Secret")
    keys = {("configMap", config["metadata"]["name"]): set(config["data"]),
            ("secret", secret["metadata"]["name"]): set(secret["stringData"])}  # fmt: skip
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert {w["metadata"]["name"] for w in workloads} == {"runwire-collector", "runwire-agent"}
    for w in workloads:
        pod = w["spec"]["template"]
        assert w["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            assert c["name"] and c["image"]
            env = {e["name"] for e in c.get("env", [])}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                for kind, key in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
                    if key in ref:
                        assert ref[key]["key"] in keys[(kind, ref[key]["name"])], f"{c['name']}: {ref}"
            for source in c.get("envFrom", []):
                for kind, key in (("configMap", "configMapRef"), ("secret", "secretRef")):
                    if key in source:
                        env |= keys[(kind, source[key]["name"])]
            for arg in c.get("args", []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in env, f"{w['metadata']['name']}: $({var}) in args is not in the container's env"
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes
    agent = next(w for w in workloads if w["kind"] == "DaemonSet")
    socket = next(v for v in agent["spec"]["template"]["spec"]["volumes"] if v["name"] == "socket")
    assert socket["hostPath"]["path"] == "/run/runwire"
    args = agent["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--socket=/run/runwire/agent.sock" in args


def test_services_select_the_collector_ports():
    docs = _manifests()
    collector = next(d for d in docs if d["kind"] == "Deployment")
    pod = collector["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    services = [d for d in docs if d["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"runwire-collector", "runwire-collector-pods"}
    for s in services:
        assert s["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in ports
    main = next(s for s in services if s["metadata"]["name"] == "runwire-collector")
    assert {p["name"] for p in main["spec"]["ports"]} == {"grpc", "http"}
    headless = next(s for s in services if s["metadata"]["name"] == "runwire-collector-pods")
    assert headless["spec"]["clusterIP"] == "None"  # DNS gives the agents every collector pod
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["RUNWIRE_COLLECTORS"].startswith("runwire-collector-pods.")


def _command_of(path: Path) -> list[str]:
    name = path.name
    if "collector" in name:
        return ["server"]
    if "agent" in name:
        return ["agent"]
    return ["server", "agent"]  # shared settings: a flag of either


def test_every_flag_in_deploy_exists():
    flags = {command: _parser_flags(command) for command in ("server", "agent")}
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and not p.name.startswith("Dockerfile")]
    assert len(files) >= 9
    for path in files:
        text = path.read_text()
        if path.suffix == ".yaml":
            # A document's command decides: the collector's and the agent's args.
            for doc in yaml.safe_load_all(text):
                for c in (doc or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                    args = c.get("args", [])
                    if args:
                        for flag in FLAG.findall(" ".join(args[1:])):
                            assert flag in flags[args[0]], f"{path.name}: runwire {args[0]} has no {flag}"
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for flag in FLAG.findall(code):  # comments may quote other programs (systemctl enable --now)
            known = set().union(*(flags[c] for c in _command_of(path)))
            assert flag in known, f"{path.relative_to(DEPLOY)}: {flag} is not a flag of runwire {_command_of(path)}"


def test_systemd_units_use_their_runtime_and_state_folders():
    agent = (SYSTEMD / "runwire-agent.service").read_text()
    assert "RuntimeDirectory=runwire" in agent and "--socket ${RUNTIME_DIRECTORY}/agent.sock" in agent
    assert "--collector ${RUNWIRE_COLLECTORS}" in agent
    collector = (SYSTEMD / "runwire-collector.service").read_text()
    assert "StateDirectory=runwire/collector" in collector and "ProtectSystem=strict" in collector
    for unit in (agent, collector):
        assert "EnvironmentFile=/etc/runwire/" in unit and "NoNewPrivileges=yes" in unit
    for example, var in (("agent.env.example", "RUNWIRE_COLLECTORS"), ("collector.env.example", "RUNWIRE_SERVER_ARGS")):
        assert re.search(rf"^{var}=", (SYSTEMD / example).read_text(), re.M)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path):
    # verify needs the ExecStart program to exist: point the units at this environment's runwire.
    runwire = Path(sys.executable).with_name("runwire")
    assert runwire.exists()
    units = []
    for unit in SYSTEMD.glob("*.service"):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/local/bin/runwire", str(runwire)))
        units.append(str(copy))
    assert len(units) == 2
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
