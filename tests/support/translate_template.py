"""Translate template.yaml with the SAM translator, as CloudFormation's transform would.

Run by the SAM CLI's own interpreter (.tools/sam/bin/python, installed by `make build`):
    translate_template.py <template> [Name=Value ...]  ->  the translated template as JSON.
AWS_DEFAULT_REGION (default us-east-1) is the region the transform runs in: SAM writes the
partition of the ARNs it generates from it (arn:aws-cn:... in cn-north-1 / cn-northwest-1).
Code locations are replaced by placeholder S3 URIs (what `sam package` would upload).
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


PARTITION = "aws-cn" if os.environ["AWS_DEFAULT_REGION"].startswith("cn-") else "aws"


class ManagedPolicies:
    """The two AWS managed policies SAM may attach (the real loader would ask IAM), in the
    partition of AWS_DEFAULT_REGION (the region the transform runs in, as CloudFormation's does)."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": f"arn:{PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": f"arn:{PARTITION}:iam::aws:policy/AWSXrayWriteOnlyAccess",
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
