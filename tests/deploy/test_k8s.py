"""deploy/k8s: the kustomize base and its KEDA overlay build offline, every resource validates against the
Kubernetes schemas, and they agree with the code: each Deployment runs a real `apprefer` command, once per
service of the catalog, probed by the kubelet on the port and paths it serves; the dashboard's Health page asks
every service through a Service that reaches it; secrets are only referenced; the admin service is not exposed;
the gateway scales on CPU and each consumer, in the overlay, on its consumer group's lag. Deliberately broken
copies of the manifests are caught."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import pytest

from services.catalog import ADMIN, GATEWAY
from tests.deploy.checks import image
from tests.deploy.k8s_manifests import (
    K8S,
    KEDA,
    Doc,
    build,
    health_target_problems,
    name,
    of_kind,
    pod_spec,
    pods_selected,
    probe_problems,
    runs,
    schema_problems,
    secret_problems,
    workload_problems,
)

# The newest Kubernetes the schemas know (every API used here is GA since 1.23: autoscaling/v2, policy/v1).
VERSION = kubernetes_validate.utils.latest_version()


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return build(K8S)


@pytest.fixture(scope="module")
def keda() -> list[Doc]:
    return build(KEDA)


def test_base_and_overlay_validate_against_the_kubernetes_schemas(base: list[Doc], keda: list[Doc]) -> None:
    seen = {json.dumps(doc, sort_keys=True) for doc in base}
    assert schema_problems(base, VERSION) == []
    assert schema_problems([doc for doc in keda if json.dumps(doc, sort_keys=True) not in seen], VERSION) == []


def test_deployments_run_each_service_of_the_catalog(base: list[Doc], keda: list[Doc]) -> None:
    assert workload_problems(base, image()) == []
    assert workload_problems(keda, image()) == []


def test_probes_ask_the_health_endpoints_each_service_serves(base: list[Doc], keda: list[Doc]) -> None:
    assert probe_problems(base, image()) == []
    assert probe_problems(keda, image()) == []


def test_the_health_page_asks_every_service_where_it_answers(base: list[Doc], keda: list[Doc]) -> None:
    assert health_target_problems(base, image()) == []
    assert health_target_problems(keda, image()) == []


def test_secrets_are_referenced_never_inlined(base: list[Doc], keda: list[Doc]) -> None:
    assert secret_problems(base) == []
    assert secret_problems(keda) == []


def test_the_admin_service_is_not_exposed(base: list[Doc]) -> None:
    services = {doc["metadata"]["name"]: doc for doc in of_kind(base, "Service")}
    for service in services.values():
        selected = {runs(doc, image()) for doc in pods_selected(service["spec"]["selector"], base)}
        if ADMIN in selected:
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name(service)
    ingresses = of_kind(base, "Ingress")
    assert ingresses, "no example Ingress"
    for ingress in ingresses:
        backends = [path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"]
                    for path in rule["http"]["paths"]]
        for backend in backends:
            selected = {runs(doc, image()) for doc in pods_selected(services[backend]["spec"]["selector"], base)}
            assert selected == {GATEWAY}, f"{name(ingress)} routes to {backend}, which is {selected}"
    # Defence in depth: only pods of the namespace may reach the admin pods, whatever routes someone adds.
    policies = [doc for doc in of_kind(base, "NetworkPolicy")
                if ADMIN in {runs(d, image()) for d in pods_selected(doc["spec"]["podSelector"]["matchLabels"], base)}]
    assert policies and all(rule.get("from") == [{"podSelector": {}}] for p in policies
                            for rule in p["spec"]["ingress"])


def test_the_gateway_scales_on_cpu_and_every_deployment_has_a_disruption_budget(base: list[Doc]) -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in of_kind(base, "Deployment")}
    (hpa,) = of_kind(base, "HorizontalPodAutoscaler")
    target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
    assert runs(target, image()) == GATEWAY
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in target["spec"], "the HPA owns the gateway's replicas"
    budgets = of_kind(base, "PodDisruptionBudget")
    for deployment in deployments.values():
        covering = [b for b in budgets if deployment in pods_selected(b["spec"]["selector"]["matchLabels"], base)]
        assert len(covering) == 1, f"{name(deployment)}: {len(covering)} PodDisruptionBudgets"


def test_pods_run_locked_down(base: list[Doc]) -> None:
    for doc in [*of_kind(base, "Deployment"), *of_kind(base, "Job")]:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, name(doc)
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False


def test_keda_scales_each_consumer_on_its_consumer_group_lag(keda: list[Doc]) -> None:
    config = next(doc["data"] for doc in of_kind(keda, "ConfigMap"))
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in of_kind(keda, "ScaledObject")}
    consumers = {doc["metadata"]["name"]: service for doc in of_kind(keda, "Deployment")
                 if (service := runs(doc, image())) is not None and service.group_id is not None}
    assert set(scaled) == set(consumers)
    for deployment, service in consumers.items():
        spec = scaled[deployment]["spec"]
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {service.group_id}, deployment
        assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(service.topics), deployment
        assert {t["metadata"]["bootstrapServers"] for t in triggers} == {config["KAFKA_BOOTSTRAP_SERVERS"]}
        # A pod beyond the partitions would have none to read.
        assert spec["maxReplicaCount"] <= int(config["APPREFER_TOPIC_PARTITIONS"]), deployment
    for doc in of_kind(keda, "Deployment"):
        if doc["metadata"]["name"] in consumers:
            assert "replicas" not in doc["spec"], f"{name(doc)}: KEDA owns its replicas"


# -- broken copies -----------------------------------------------------------------------------------------------


def broken_copy(tmp_path: Path, file: str, original: str, replacement: str, count: int = 1) -> Path:
    """deploy/k8s copied with one deliberate mistake in `file` (the original text must be there to break)."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    manifest = copy / file
    text = manifest.read_text()
    assert original in text, f"{original!r} is no longer in deploy/k8s/{file}: update this test"
    manifest.write_text(text.replace(original, replacement, count))
    return copy


Check = Callable[[list[Doc]], list[str]]
PROBES: Check = lambda docs: probe_problems(docs, image())  # noqa: E731
WORKLOADS: Check = lambda docs: workload_problems(docs, image())  # noqa: E731
HEALTH: Check = lambda docs: health_target_problems(docs, image())  # noqa: E731

BROKEN_MANIFESTS = [
    pytest.param("base/gateway.yaml", "path: /readyz", "path: /ready", PROBES,
                 "Deployment/gateway readinessProbe: http://127.0.0.1:8080/ready is not", id="gateway probe path"),
    pytest.param("base/admin.yaml", "path: /healthz", "path: /readyz", PROBES,
                 "Deployment/admin livenessProbe: http://127.0.0.1:8081/readyz is not", id="liveness on readyz"),
    pytest.param("base/gateway.yaml", "containerPort: 8080", "containerPort: 8081", PROBES,
                 "asks port 8081, but gateway serves", id="gateway port"),
    pytest.param("base/consumers.yaml", "path: /readyz", "path: /ready", PROBES,
                 "Deployment/attribution readinessProbe: http://127.0.0.1:9100/ready is not attribution's readiness",
                 id="consumer probe path"),
    pytest.param("base/forwarders.yaml", "path: /healthz", "path: /metrics", PROBES,
                 "Deployment/forwarder-google-ads livenessProbe: http://127.0.0.1:9100/metrics is not",
                 id="forwarder probe path"),
    pytest.param("base/consumers.yaml", "containerPort: 9100", "containerPort: 9101", PROBES,
                 "Deployment/attribution readinessProbe: http://127.0.0.1:9101/readyz asks port 9101",
                 id="consumer port"),
    pytest.param("base/consumers.yaml", "port: metrics", "port: http", PROBES,
                 "Deployment/attribution readinessProbe: port 'http' is no port of the container",
                 id="consumer port name"),
    pytest.param("base/consumers.yaml", """httpGet:
              path: /readyz
              port: metrics""", """exec:
              command: ["python", "/app/deploy/healthcheck.py", "http://127.0.0.1:9100/readyz"]""", PROBES,
                 "Deployment/attribution readinessProbe: exec, not httpGet on attribution's /readyz",
                 id="consumer exec probe"),
    pytest.param("base/config.env", "APPREFER_METRICS_PORT=9100", "APPREFER_METRICS_PORT=9200", PROBES,
                 "asks port 9100, but attribution serves /healthz and /readyz on 9200", id="config moves port"),
    pytest.param("base/config.env", "APPREFER_METRICS_HOST=0.0.0.0", "APPREFER_METRICS_HOST=127.0.0.1", PROBES,
                 "Deployment/audit: audit listens on 127.0.0.1 (APPREFER_METRICS_HOST), its container's loopback",
                 id="consumer on loopback"),
    pytest.param("base/admin.yaml", "                forwarder-tiktok=http://forwarder-tiktok:9100\n", "",
                 HEALTH, "forwarder-tiktok is missing from APPREFER_HEALTH_TARGETS", id="target missing"),
    pytest.param("base/admin.yaml", "skan=http://skan:9100", "skan=http://skan:9200", HEALTH,
                 "skan=http://skan:9200: Service/skan has no port 9200", id="target port"),
    pytest.param("base/admin.yaml", "audit=http://audit:9100", "audit=http://auditor:9100", HEALTH,
                 "audit=http://auditor:9100: auditor is no Service of namespace apprefer", id="target host"),
    pytest.param("base/admin.yaml", "fanout=http://fanout:9100", "fanout=http://skan:9100", HEALTH,
                 "fanout=http://skan:9100: Service/skan selects the pods of skan, not fanout", id="target swapped"),
    pytest.param("base/admin.yaml", "attribution=http://attribution:9100", "attribution=http://127.0.0.1:9100",
                 HEALTH, "127.0.0.1 is the admin pod's own loopback, where attribution does not run",
                 id="target on loopback"),
    pytest.param("base/consumers.yaml", "      targetPort: metrics", "      targetPort: 9101", HEALTH,
                 "Service/attribution port 9100 leads to Deployment/attribution's port 9101, but attribution serves",
                 id="service target port"),
    pytest.param("base/forwarders.yaml", """kind: Service
metadata:
  name: forwarder-meta""", """kind: Service
metadata:
  name: forwarder-metaa""", HEALTH, "forwarder-meta is no Service of namespace apprefer", id="service missing"),
    pytest.param("base/consumers.yaml", 'args: ["run", "attribution"]', 'args: ["run", "atribution"]', WORKLOADS,
                 "invalid choice: 'atribution'", id="command typo"),
    pytest.param("base/forwarders.yaml", '"--network", "tiktok"', '"--network", "meta"', WORKLOADS,
                 "forwarder-tiktok (`apprefer run forwarder --network tiktok`) is missing", id="forwarder missing"),
    pytest.param("base/init-job.yaml", "apprefer db upgrade && ", "", WORKLOADS,
                 "not `apprefer db upgrade` then `apprefer topics create`", id="job without migrations"),
    pytest.param("base/config.env", "APPREFER_LOG_LEVEL=INFO", "APPREFER_LOGLEVEL=INFO", WORKLOADS,
                 "APPREFER_LOGLEVEL is no apprefer setting", id="unknown variable"),
    pytest.param("base/pod-defaults.yaml", "enableServiceLinks: false", "enableServiceLinks: true", WORKLOADS,
                 "enableServiceLinks is not false", id="service links"),
    pytest.param("base/gateway.yaml", """          resources:
            requests:
              cpu: "1"
              memory: 384Mi
""", "          resources:\n            requests:\n              cpu: \"1\"\n", WORKLOADS,
                 "Deployment/gateway apprefer: no requests for memory", id="no memory request"),
]


@pytest.mark.parametrize(("file", "original", "replacement", "check", "complaint"), BROKEN_MANIFESTS)
def test_a_broken_manifest_is_caught(tmp_path: Path, file: str, original: str, replacement: str, check: Check,
                                     complaint: str) -> None:
    found = check(build(broken_copy(tmp_path, file, original, replacement)))
    assert any(complaint in problem for problem in found), found


def test_an_inlined_secret_is_caught(tmp_path: Path) -> None:
    copy = broken_copy(tmp_path, "base/admin.yaml", """            - name: APPREFER_ADMIN_TOKEN
              valueFrom:
                secretKeyRef:
                  name: apprefer-secrets
                  key: APPREFER_ADMIN_TOKEN""", """            - name: APPREFER_ADMIN_TOKEN
              value: hunter2""")
    assert "Deployment/admin: APPREFER_ADMIN_TOKEN is not read from a Secret" in secret_problems(build(copy))


def test_an_invalid_manifest_is_caught(tmp_path: Path) -> None:
    copy = broken_copy(tmp_path, "base/gateway.yaml", "periodSeconds: 5", "periodSecond: 5")
    found = schema_problems(of_kind(build(copy), "Deployment"), VERSION)
    assert any("Deployment/gateway" in problem and "periodSecond" in problem for problem in found), found
