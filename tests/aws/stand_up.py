#!/usr/bin/env python3
"""Stands infra/template.yaml up as a CloudFormation stack in a moto server, as `sam deploy`
would on AWS: the SAM transform is applied offline by aws-sam-translator (the library `sam`
itself uses), each function's code is a zip in an S3 bucket, and the stack is created through
moto's CloudFormation API with the parameters of a full deployment (every optional part on).

moto's CloudFormation does not implement every resource type the template uses; those resources
are left out (and every reference to them replaced by a "not-created-<id>" string) and listed in
the report, so the caller can hold the list to the types it knows moto lacks. Everything else is
created by moto from the template, not by the test.

usage: stand_up.py MOTO_URL STACK_NAME
Resources whose Condition is false for these parameters (the GPU worker, without its image) are
not sent, as CloudFormation would not make them. Prints one JSON object: status, resources
[{logical, type, physical, status}], left_out [{logical, type}], off_by_condition [logical],
outputs {key: value}, and what the wiring became: queues {url: {arn,
redrive}} and mappings [{function, source, batch_size, response_types}].
"""

import io
import json
import os
import re
import sys
import time
import warnings
import zipfile

import boto3
from cfnlint.decode import cfn_yaml
from moto.cloudformation.parsing import get_model_map
from samtranslator.translator.transform import transform

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "infra", "template.yaml")
CODE_BUCKET = "spaceport-code"
PARAMETERS = {
    "ReconstructImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/spaceport-reconstruct:test",
    "ApiKeys": "[]",
    "HfToken": "hf_stand_up",
    "WebhookSecrets": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "RunTokenSecret": "r" * 40,
    "RetentionDays": "30",
    "AlarmEmail": "ops@example.com",
}


class NoManagedPolicies:
    """The translator asks IAM for managed policies' ARNs only for names it does not know."""

    def load(self):
        return {}


def translated():
    template = json.loads(json.dumps(cfn_yaml.load(TEMPLATE), default=str))
    # `sam deploy` uploads each CodeUri and rewrites it to the S3 object: done here by hand.
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::Serverless::Function" and isinstance(r["Properties"].get("CodeUri"), str):
            r["Properties"]["CodeUri"] = {"Bucket": CODE_BUCKET, "Key": f"{name}.zip"}
    return transform(template, PARAMETERS, NoManagedPolicies())


def off_by_condition(template):
    """Drops the resources whose Condition is false for PARAMETERS (the template's defaults
    otherwise), as CloudFormation does; moto would list them half-made."""
    values = {k: p.get("Default") for k, p in template.get("Parameters", {}).items()}
    values.update(PARAMETERS)

    def value(x):
        if isinstance(x, dict) and "Ref" in x:
            return str(values.get(x["Ref"], ""))
        return str(x)

    def holds(c):
        if "Fn::Equals" in c:
            a, b = c["Fn::Equals"]
            return value(a) == value(b)
        if "Fn::Not" in c:
            return not holds(c["Fn::Not"][0])
        if "Fn::And" in c:
            return all(holds(x) for x in c["Fn::And"])
        if "Fn::Or" in c:
            return any(holds(x) for x in c["Fn::Or"])
        if "Condition" in c:
            return holds(template["Conditions"][c["Condition"]])
        raise ValueError(f"a condition this script cannot read: {c}")

    off = sorted(k for k, r in template["Resources"].items()
                 if "Condition" in r and not holds(template["Conditions"][r["Condition"]]))
    for k in off:
        del template["Resources"][k]
    return template, off


def leave_out(template, supported):
    left = {k: r["Type"] for k, r in template["Resources"].items() if r["Type"] not in supported}

    def scrub(v):
        if isinstance(v, dict):
            if v.get("Ref") in left:
                return f"not-created-{v['Ref']}"
            if "Fn::GetAtt" in v:
                g = v["Fn::GetAtt"]
                target = g[0] if isinstance(g, list) else g.split(".")[0]
                if target in left:
                    return f"not-created-{target}"
            if "Fn::Sub" in v:
                sub = v["Fn::Sub"]
                text = sub if isinstance(sub, str) else sub[0]
                text = re.sub(
                    r"\$\{(\w+)(\.\w+)?\}",
                    lambda m: f"not-created-{m.group(1)}" if m.group(1) in left else m.group(0),
                    text,
                )
                return {"Fn::Sub": text if isinstance(sub, str) else [text, scrub(sub[1])]}
            return {k: scrub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [scrub(x) for x in v]
        return v

    kept = {}
    for k, r in template["Resources"].items():
        if k in left:
            continue
        r = scrub(r)
        if "DependsOn" in r:
            deps = [r["DependsOn"]] if isinstance(r["DependsOn"], str) else r["DependsOn"]
            r["DependsOn"] = [d for d in deps if d not in left]
        kept[k] = r
    template["Resources"] = kept
    template["Outputs"] = scrub(template.get("Outputs", {}))
    return template, left


def main():
    url, stack = sys.argv[1], sys.argv[2]
    warnings.simplefilter("ignore")
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    template, off = off_by_condition(translated())
    template, left = leave_out(template, set(get_model_map()))
    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket=CODE_BUCKET)
    for name, r in template["Resources"].items():
        code = r["Properties"].get("Code", {}) if r["Type"] == "AWS::Lambda::Function" else {}
        if "S3Key" in code:
            zipped = io.BytesIO()
            with zipfile.ZipFile(zipped, "w") as z:
                z.writestr("bootstrap", "#!/bin/sh\n")
            s3.put_object(Bucket=CODE_BUCKET, Key=code["S3Key"], Body=zipped.getvalue())
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.time() + 60
    while True:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not status["StackStatus"].endswith("_IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.2)
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    sqs = boto3.client("sqs", **kw)
    queues = {}
    for r in resources:
        if r["ResourceType"] == "AWS::SQS::Queue":
            a = sqs.get_queue_attributes(QueueUrl=r["PhysicalResourceId"], AttributeNames=["All"])["Attributes"]
            queues[r["PhysicalResourceId"]] = {"arn": a["QueueArn"], "redrive": json.loads(a.get("RedrivePolicy", "null"))}
    mappings = [
        {"function": m["FunctionArn"].split(":")[-1], "source": m["EventSourceArn"],
         "batch_size": m.get("BatchSize"), "response_types": m.get("FunctionResponseTypes", [])}
        for m in boto3.client("lambda", **kw).list_event_source_mappings()["EventSourceMappings"]
    ]
    print(json.dumps({
        "queues": queues,
        "mappings": mappings,
        "status": status["StackStatus"],
        "resources": [
            {"logical": r["LogicalResourceId"], "type": r["ResourceType"],
             "physical": r.get("PhysicalResourceId"), "status": r["ResourceStatus"]}
            for r in resources
        ],
        "left_out": [{"logical": k, "type": t} for k, t in sorted(left.items())],
        "off_by_condition": off,
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in status.get("Outputs", [])},
    }))


if __name__ == "__main__":
    main()
