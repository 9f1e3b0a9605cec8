"""The translated template in each partition: commercial (us-east-1) and AWS China (cn-north-1, cn-northwest-1).

The SAM translator that `make build` installs translates template.yaml as CloudFormation's
transform would in that region (tests/support/translate_template.py), then the evaluator of
tests/functional/test_template_parameters.py resolves the intrinsics with the region's pseudo
parameters. Checked for each: the Lambda Web Adapter layer ARN (its account per partition and
region, from Mappings), the alias wiring (the REST API's integrations, their permissions and
the Function URL all invoke the "live" alias), the SnapStart setting, and that every ARN and
endpoint is in the stack's own partition.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.functional.test_template_parameters import Deployment, pseudo_parameters

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
REQUIRED = {"LlmBaseUrl": "https://llm.example.com/v1", "LlmModel": "some-model"}
ADAPTER = {  # Lambda Web Adapter 1.1.0 = layer version 30
    "us-east-1": "arn:aws:lambda:us-east-1:753240598075:layer:LambdaAdapterLayerX86:30",
    "cn-north-1": "arn:aws-cn:lambda:cn-north-1:041581134020:layer:LambdaAdapterLayerX86:30",
    "cn-northwest-1": "arn:aws-cn:lambda:cn-northwest-1:069767869989:layer:LambdaAdapterLayerX86:30",
}

pytestmark = pytest.mark.skipif(not SAM_PYTHON.is_file(), reason="SAM CLI missing: run `make build`")


def _translate(region: str, **parameters: str) -> dict:
    overrides = [f"{k}={v}" for k, v in {**REQUIRED, **parameters}.items()]
    run = subprocess.run([str(SAM_PYTHON), str(ROOT / "tests/support/translate_template.py"),
                          str(ROOT / "template.yaml"), *overrides], capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": region}, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def _deployment(region: str, **parameters: str) -> tuple[dict, Deployment]:
    translated = _translate(region, **parameters)
    return translated, Deployment(translated, pseudo=pseudo_parameters(region), **{**REQUIRED, **parameters})


def _created(translated: dict, deployment: Deployment) -> dict[str, dict]:
    """The resources this deployment creates (conditions applied)."""
    return {name: r for name, r in translated["Resources"].items()
            if "Condition" not in r or deployment.condition(r["Condition"])}


@pytest.mark.parametrize("region", sorted(ADAPTER))
@pytest.mark.parametrize("snapstart", ["None", "PublishedVersions"])
def test_layer_alias_and_snapstart_in_each_partition(region, snapstart):
    china = region.startswith("cn-")
    translated, deployment = _deployment(region, SnapStart=snapstart)
    resources = _created(translated, deployment)
    stream, api = resources["StreamFunction"]["Properties"], resources["ApiFunction"]["Properties"]

    # The adapter layer from this partition's (China: this region's) account.
    assert deployment.eval(stream["Layers"][0]) == ADAPTER[region]
    assert stream["Layers"][1] == {"Ref": next(n for n in resources if n.startswith("ChatRelayLayer"))}

    # SnapStart where asked and offered (not in China); published versions behind "live" in every case.
    expected = "PublishedVersions" if snapstart == "PublishedVersions" and not china else "None"
    for props in (stream, api):
        assert deployment.eval(props["SnapStart"]) == {"ApplyOn": expected}
    aliases = {r["Properties"]["FunctionName"]["Ref"]: name for name, r in resources.items()
               if r["Type"] == "AWS::Lambda::Alias" and r["Properties"]["Name"] == "live"}
    assert set(aliases) == {"StreamFunction", "ApiFunction"}
    for function, alias in aliases.items():
        version = resources[alias]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert resources[version]["Type"] == "AWS::Lambda::Version"
        assert resources[version]["Properties"]["FunctionName"] == {"Ref": function}

    # Every way in invokes the alias: the REST API's integrations and their permissions ...
    paths = resources["ChatApi"]["Properties"]["Body"]["paths"]
    partition = "aws-cn" if china else "aws"
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "options":
                continue
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            function = "StreamFunction" if path.endswith("/stream") else "ApiFunction"
            assert uri.startswith(f"arn:{partition}:apigateway:${{AWS::Region}}:lambda:path/"), uri
            assert f"/functions/${{{aliases[function]}}}/" in uri, (path, uri)
    permissions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert permissions and all(p["FunctionName"]["Ref"] in aliases.values() for p in permissions)
    for permission in permissions:
        if permission["Principal"] == "apigateway.amazonaws.com":
            assert deployment.eval(permission["SourceArn"]).startswith(f"arn:{partition}:execute-api:{region}:")
    # ... and the Function URL, which the China regions do not offer.
    if china:
        assert not any(r["Type"] == "AWS::Lambda::Url" for r in resources.values())
        assert all(p["Principal"] != "*" for p in permissions)
        assert "StreamFunctionUrl" not in {n for n, o in translated["Outputs"].items()
                                           if "Condition" not in o or deployment.condition(o["Condition"])}
    else:
        url = resources["StreamFunctionUrl"]["Properties"]
        assert url["TargetFunctionArn"] == {"Ref": aliases["StreamFunction"]} and url["InvokeMode"] == "RESPONSE_STREAM"
        public = {p["Action"] for p in permissions if p["Principal"] == "*"}
        assert public == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert deployment.eval(translated["Outputs"]["SnapStartApplied"]["Value"]) == expected


@pytest.mark.parametrize("region", sorted(ADAPTER))
def test_every_arn_and_endpoint_is_in_the_stacks_partition(region):
    china = region.startswith("cn-")
    translated, deployment = _deployment(
        region, SecretStore="secretsmanager", LlmApiKeySecretName="/c/llm", Tracing="Active",
        SecretsKmsKeyArn=f"arn:{'aws-cn' if china else 'aws'}:kms:{region}:123456789012:key/1234abcd-12ab")
    resolved = json.dumps(deployment.eval({name: r for name, r in _created(translated, deployment).items()}))
    resolved += json.dumps(deployment.eval(translated["Outputs"]))
    partitions = set(re.findall(r"arn:(aws[a-z-]*):", resolved))
    assert partitions == {"aws-cn" if china else "aws"}, partitions
    suffix = "amazonaws.com.cn" if china else "amazonaws.com"
    hosts = set(re.findall(r"[a-z0-9.-]+\.amazonaws\.com(?:\.cn)?", resolved))
    # Service principals are the same names in every partition; every endpoint is the partition's own.
    principals = {"lambda.amazonaws.com", "apigateway.amazonaws.com"}
    assert {h for h in hosts if h not in principals} and all(h.endswith(suffix) for h in hosts - principals), hosts
    assert f".execute-api.{region}.{suffix}/live" in deployment.eval(translated["Outputs"]["RestApiUrl"]["Value"])


def test_arm64_runs_on_x86_64_in_china_where_the_adapter_has_no_arm64_layer():
    for region, architecture, layer in (("us-east-1", "arm64", "LambdaAdapterLayerArm64:30"),
                                        ("cn-north-1", "x86_64", "LambdaAdapterLayerX86:30"),
                                        ("cn-northwest-1", "x86_64", "LambdaAdapterLayerX86:30")):
        translated, deployment = _deployment(region, Architecture="arm64")
        resources = _created(translated, deployment)
        for function in ("StreamFunction", "ApiFunction"):
            assert deployment.eval(resources[function]["Properties"]["Architectures"]) == [architecture]
        assert deployment.eval(resources["StreamFunction"]["Properties"]["Layers"][0]).endswith(layer)


def _lookups(node):
    if isinstance(node, dict):
        if "Fn::FindInMap" in node:
            yield node["Fn::FindInMap"]
        for value in node.values():
            yield from _lookups(value)
    elif isinstance(node, list):
        for value in node:
            yield from _lookups(value)


def test_every_mapping_lookup_has_constant_keys_that_exist():
    """CloudFormation resolves every Fn::FindInMap, also in an Fn::If branch that is not taken, and
    fails the deployment on a missing entry: so no lookup may depend on the region."""
    from chatrelay_dev.local.table import load_template

    template = load_template()
    lookups = list(_lookups(template))
    assert lookups
    for name, top, second in lookups:
        assert all(isinstance(key, str) for key in (name, top, second)), (name, top, second)
        assert second in template["Mappings"][name][top], (name, top, second)
