"""deploy/k8s built with `kubectl kustomize` (offline), validated against the Kubernetes schemas
(kubernetes-validate), and checked against the code like the compose file (tests/deploy/checks.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from services.catalog import ADMIN, Service
from tests.deploy.checks import (
    DEPLOY,
    HEALTH_PATHS,
    HEALTH_TARGETS,
    Image,
    apprefer_invocations,
    command_problems,
    coverage_problems,
    first,
    health_targets_problems,
    health_url_problems,
    is_loopback,
    listen_problems,
    one_shot_problems,
    secret_variables,
    served_port,
    service_run_by,
    variable_problems,
)

K8S = DEPLOY / "k8s"
KEDA = K8S / "overlays" / "keda"
# Custom resources the schemas do not describe: checked by tests/deploy/test_k8s.py instead.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
WORKLOADS = ("Deployment", "Job")

Doc = dict[str, Any]


def build(path: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to build deploy/k8s (Debian's package `kubectl`; .ci/run installs it)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def schema_problems(docs: list[Doc], version: str) -> list[str]:
    """Each resource against the schemas of Kubernetes `version`, strictly: an unknown field is a mistake."""
    problems = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name(doc)}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name(doc)}: {exc.message}")
    return problems


def name(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_spec(doc: Doc) -> Doc:
    return dict(doc["spec"]["template"]["spec"])


def argv(container: Doc, image: Image) -> list[str]:
    """What a container runs: `command` replaces the image's ENTRYPOINT (and drops its CMD), `args` its CMD."""
    if "command" in container:
        return [*container["command"], *container.get("args", [])]
    return [*image.entrypoint, *container.get("args", image.cmd)]


def container_env(container: Doc, docs: list[Doc], image: Image) -> dict[str, str]:
    """The variables a container starts with: the image's, then its ConfigMaps', then its own (a Secret's value
    stands as `<secret name/key>`)."""
    config_maps = {doc["metadata"]["name"]: doc.get("data", {}) for doc in of_kind(docs, "ConfigMap")}
    env = image.setting_env()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps.get(source["configMapRef"]["name"], {}))
    for variable in container.get("env", []):
        reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
        env[variable["name"]] = f"<{reference['name']}/{reference['key']}>" if reference else variable.get("value", "")
    return env


def runs(doc: Doc, image: Image) -> Service | None:
    containers = pod_spec(doc)["containers"]
    invocations = apprefer_invocations(argv(containers[0], image)) if len(containers) == 1 else None
    return service_run_by(invocations[0]) if invocations and len(invocations) == 1 else None


def workload_problems(docs: list[Doc], image: Image) -> list[str]:
    """Deployments run the catalog's services, once each; the Job the schema and topics; every container a real
    apprefer command with real variables, requests and limits; ConfigMaps hold only settings."""
    problems = []
    deployed = []
    for doc in [*of_kind(docs, "Deployment"), *of_kind(docs, "Job")]:
        for container in pod_spec(doc)["containers"]:
            where = f"{name(doc)} {container['name']}"
            problems += command_problems(where, argv(container, image))
            problems += variable_problems(where, [variable["name"] for variable in container.get("env", [])])
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set((container.get("resources") or {}).get(kind, {}))
                if missing:
                    problems.append(f"{where}: no {kind} for {', '.join(sorted(missing))}")
        service = runs(doc, image)
        if doc["kind"] == "Deployment" and service is not None:
            deployed.append(service)
        elif doc["kind"] == "Job":
            invocations = apprefer_invocations(argv(pod_spec(doc)["containers"][0], image)) or []
            problems += one_shot_problems(name(doc), invocations)
        if pod_spec(doc).get("enableServiceLinks", True) is not False:
            problems.append(f"{name(doc)}: enableServiceLinks is not false: Services would set *_PORT variables, "
                            "APPREFER_GATEWAY_PORT=tcp://... among them")
    problems += coverage_problems("deploy/k8s", deployed)
    for config_map in of_kind(docs, "ConfigMap"):
        problems += variable_problems(name(config_map), config_map.get("data", {}))
    return problems


PROBE_HANDLERS = ("httpGet", "exec", "tcpSocket", "grpc")


def probe_problems(docs: list[Doc], image: Image) -> list[str]:
    """Readiness on /readyz and liveness on /healthz, asked by the kubelet itself (httpGet, on the pod's IP) on the
    port each service really serves them on, which must then listen beyond the pod's loopback."""
    problems = []
    for doc in of_kind(docs, "Deployment"):
        service = runs(doc, image)
        if service is None:
            continue
        container = pod_spec(doc)["containers"][0]
        env = container_env(container, docs, image)
        problems += listen_problems(name(doc), service, env)
        for kind in ("readiness", "liveness"):
            probe = container.get(f"{kind}Probe")
            where = f"{name(doc)} {kind}Probe"
            if probe is None:
                problems.append(f"{where}: missing")
            elif "httpGet" in probe:
                problems += _http_probe_problems(where, service, probe["httpGet"], container, env, kind)
            else:
                handler = first(h for h in PROBE_HANDLERS if h in probe) or "no handler"
                problems.append(f"{where}: {handler}, not httpGet on {service.name}'s {HEALTH_PATHS[kind]}")
    return problems


def container_port(container: Doc, port: int | str) -> int | None:
    """A port of a container by number or by name (None: no port of that name)."""
    if isinstance(port, str):
        return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)
    return port


def _http_probe_problems(where: str, service: Service, http: Mapping[str, Any], container: Doc,
                         env: Mapping[str, str], kind: str) -> list[str]:
    problems = []
    if http.get("host"):
        problems.append(f"{where}: asks {http['host']}, not the pod")
    if http.get("scheme", "HTTP") != "HTTP":
        problems.append(f"{where}: scheme {http['scheme']}, but {service.name} serves plain HTTP")
    port = container_port(container, http["port"])
    if port is None:
        return [*problems, f"{where}: port {http['port']!r} is no port of the container"]
    url = f"http://127.0.0.1:{port}{http.get('path', '/')}"  # what the probe asks, at the pod's own address
    return problems + health_url_problems(where, service, url, env, kind)


def health_target_problems(docs: list[Doc], image: Image) -> list[str]:
    """The dashboard's Health page: the admin service's APPREFER_HEALTH_TARGETS names every service at a Service of
    its namespace that selects that service's pods, on a Service port that leads to the container port the service
    serves /readyz and /metrics on; the admin service itself may be asked on its own loopback."""
    admins = [doc for doc in of_kind(docs, "Deployment") if runs(doc, image) == ADMIN]
    if len(admins) != 1:
        return []  # workload_problems says so
    (admin,) = admins
    container = pod_spec(admin)["containers"][0]
    namespace = admin["metadata"].get("namespace", "default")
    cluster_services = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Service")
                        if doc["metadata"].get("namespace", "default") == namespace}

    def reach(service: Service, host: str, port: int) -> list[str]:
        if is_loopback(host):
            if service != ADMIN:
                return [f"{host} is the admin pod's own loopback, where {service.name} does not run"]
            served = served_port(ADMIN, container_env(container, docs, image))
            return [] if port == served else [f"port {port}, but the admin service serves /readyz on {served}"]
        cluster_service = cluster_services.get(_service_name(host, namespace) or "")
        if cluster_service is None:
            return [f"{host} is no Service of namespace {namespace}"]
        return _service_reach_problems(cluster_service, service, port, docs, image)

    env = container_env(container, docs, image)
    return health_targets_problems(name(admin), env.get(HEALTH_TARGETS, ""), reach)


def _service_name(host: str, namespace: str) -> str | None:
    """The Service a host name of a pod in `namespace` resolves to: `name`, `name.<namespace>`,
    `name.<namespace>.svc` or `name.<namespace>.svc.cluster.local`."""
    label, _, rest = host.partition(".")
    return label if rest in ("", namespace, f"{namespace}.svc", f"{namespace}.svc.cluster.local") else None


def _service_reach_problems(cluster_service: Doc, service: Service, port: int, docs: list[Doc],
                            image: Image) -> list[str]:
    where = name(cluster_service)
    spec = cluster_service["spec"]
    if not spec.get("selector"):
        return [f"{where} selects no pods"]
    selected = [doc for doc in pods_selected(spec["selector"], docs) if doc["kind"] == "Deployment"]
    ran = {runs(doc, image) for doc in selected}
    if ran != {service}:
        names = sorted(s.name if s else "no service" for s in ran) or ["no Deployment"]
        return [f"{where} selects the pods of {', '.join(names)}, not {service.name}"]
    headless = spec.get("clusterIP") == "None"  # the name resolves to the pods' own addresses
    service_port = next((p for p in spec.get("ports", []) if p["port"] == port), None)
    target: int | str
    if headless:
        target = port
    elif service_port is None:
        return [f"{where} has no port {port}"]
    else:
        target = service_port.get("targetPort", port)
    problems = []
    for doc in selected:
        container = pod_spec(doc)["containers"][0]
        served = served_port(service, container_env(container, docs, image))
        if container_port(container, target) != served:
            problems.append(f"{where} port {port} leads to {name(doc)}'s port {target!r}, but {service.name} "
                            f"serves /readyz and /metrics on {served}")
    return problems


def secret_problems(docs: list[Doc]) -> list[str]:
    """No Secret in the manifests, and every secret setting read from one."""
    secrets = secret_variables()
    problems = [f"{name(doc)}: a Secret written into the manifests" for doc in of_kind(docs, "Secret")]
    for config_map in of_kind(docs, "ConfigMap"):
        problems += [f"{name(config_map)}: holds {key}, a secret" for key in config_map.get("data", {})
                     if key in secrets]
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        for container in pod_spec(doc)["containers"]:
            for variable in container.get("env", []):
                if variable["name"] in secrets and "secretKeyRef" not in (variable.get("valueFrom") or {}):
                    problems.append(f"{name(doc)}: {variable['name']} is not read from a Secret")
            problems += [f"{name(doc)}: envFrom {source}" for source in container.get("envFrom", [])
                         if not {"configMapRef", "secretRef"} & set(source)]
    return problems


def pods_selected(selector: Mapping[str, str], docs: list[Doc]) -> list[Doc]:
    """The workloads whose pods carry every label of `selector`."""
    return [doc for doc in docs if doc["kind"] in WORKLOADS
            and selector.items() <= doc["spec"]["template"]["metadata"].get("labels", {}).items()]
