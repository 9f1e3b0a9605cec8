"""Translate template.yaml with the SAM translator, as CloudFormation's transform would.

Run by the SAM CLI's own interpreter (.tools/sam/bin/python, installed by `make build`):
    translate_template.py <template> [Name=Value ...]  ->  the translated template as JSON.
Code locations are replaced by placeholder S3 URIs (what `sam package` would upload).
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


class ManagedPolicies:
    """The two AWS managed policies SAM may attach (the real loader would ask IAM)."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        }


path, *overrides = sys.argv[1:]
with open(path, encoding="utf-8") as handle:
    template = yaml_parse(handle.read())
for resource in template["Resources"].values():
    for key in ("CodeUri", "ContentUri"):
        if key in resource.get("Properties", {}):
            resource["Properties"][key] = "s3://bucket/key"
parameters = dict(item.split("=", 1) for item in overrides)
print(json.dumps(transform(template, parameters, ManagedPolicies()), default=str))
