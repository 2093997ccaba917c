#!/usr/bin/env python3
"""boto3 straight against countersign's AWS fake (no gateway in between).

Proves the fake agrees with AWS's own SDK: botocore signs, the fake verifies
with its own SigV4 code, and every answer must parse back to what was sent.

usage: aws_e2e.py ENDPOINT_URL ACCESS_KEY_ID SECRET_ACCESS_KEY REGION
                  [ROLE_ARN WEB_IDENTITY_TOKEN]

With a role and token, credentials from STS AssumeRoleWithWebIdentity (at the
same endpoint) are used for a second round of S3 calls. Exits 0 when all
agrees; otherwise 1 with one line per mismatch on stderr.
"""

import hashlib
import os
import sys

try:
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError as e:  # the Rust test checks this before running us
    print(f"boto3 is not installed: {e}", file=sys.stderr)
    sys.exit(2)

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print(f"MISMATCH: {what}", file=sys.stderr)


def error_code(call):
    """The AWS error code `call` fails with, or None when it succeeds."""
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def clients(endpoint, akid, secret, region, token=None):
    cfg = Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 1},
    )
    session = boto3.session.Session(
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=region,
    )
    s3 = session.client("s3", endpoint_url=endpoint, config=cfg)
    ddb = session.client("dynamodb", endpoint_url=endpoint, config=cfg)
    return s3, ddb


AWKWARD = [
    "plain",
    "with space",
    "ü/日本",
    "trailing space ",
    "a/b/c",
    "plus+and space",
] + [f"sym{c}x" for c in "+%=&*~'():,;@$!"]


def s3_round(s3, bucket, region, label):
    kwargs = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    check(
        bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]],
        f"{label}: list_buckets lacks {bucket}",
    )

    sizes = {"empty": b"", "one": b"\x00", "big": os.urandom(200 * 1000)}
    bodies = {}
    for i, key in enumerate(AWKWARD):
        body = f"{key}|{i}".encode()
        bodies[key] = body
    for name, body in sizes.items():
        bodies[f"sizes/{name}"] = body

    for key, body in bodies.items():
        put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-e2e")
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        check(put["ETag"] == etag, f"{label}: put {key!r} ETag {put['ETag']} != {etag}")
        got = s3.get_object(Bucket=bucket, Key=key)
        data = got["Body"].read()
        check(data == body, f"{label}: get {key!r} returned {len(data)} bytes, not the {len(body)} put")
        check(got["ETag"] == etag, f"{label}: get {key!r} ETag {got['ETag']}")
        check(got["ContentLength"] == len(body), f"{label}: get {key!r} ContentLength {got['ContentLength']}")
        check(got["ContentType"] == "application/x-e2e", f"{label}: get {key!r} ContentType {got['ContentType']}")
        check(got.get("LastModified") is not None, f"{label}: get {key!r} has no LastModified")
        head = s3.head_object(Bucket=bucket, Key=key)
        check(head["ContentLength"] == len(body), f"{label}: head {key!r} ContentLength {head['ContentLength']}")
        check(head["ETag"] == etag, f"{label}: head {key!r} ETag {head['ETag']}")

    # The SDK validates the stored checksum when it asks for it.
    got = s3.get_object(Bucket=bucket, Key="sizes/big", ChecksumMode="ENABLED")
    check(got["Body"].read() == sizes["big"], f"{label}: checksum-mode get of the 200 kB object")
    part = s3.get_object(Bucket=bucket, Key="sizes/big", Range="bytes=100-199")
    check(part["Body"].read() == sizes["big"][100:200], f"{label}: ranged get")

    listed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 7}):
        listed += [o["Key"] for o in page.get("Contents", [])]
    check(sorted(listed) == sorted(bodies), f"{label}: paginated listing {sorted(listed)} != {sorted(bodies)}")

    # Prefixes with reserved characters, rolled up by a delimiter.
    tree = ["r&d/=x/1", "r&d/=x/2", "r&d/y z/3", "r&d/top", "r&d+/other", "100%/a"]
    for key in tree:
        s3.put_object(Bucket=bucket, Key=key, Body=b"t")
    out = s3.list_objects_v2(Bucket=bucket, Prefix="r&d/", Delimiter="/")
    prefixes = sorted(p["Prefix"] for p in out.get("CommonPrefixes", []))
    keys = [o["Key"] for o in out.get("Contents", [])]
    check(prefixes == ["r&d/=x/", "r&d/y z/"], f"{label}: CommonPrefixes {prefixes}")
    check(keys == ["r&d/top"], f"{label}: Contents under r&d/ {keys}")
    check(out.get("Prefix") == "r&d/", f"{label}: echoed Prefix {out.get('Prefix')!r}")
    out = s3.list_objects_v2(Bucket=bucket, Prefix="100%/")
    check([o["Key"] for o in out.get("Contents", [])] == ["100%/a"], f"{label}: prefix with % {out.get('Contents')}")
    out = s3.list_objects_v2(Bucket=bucket, Prefix="ü/")
    check([o["Key"] for o in out.get("Contents", [])] == ["ü/日本"], f"{label}: unicode prefix {out.get('Contents')}")

    for key in list(bodies) + tree:
        s3.delete_object(Bucket=bucket, Key=key)
    for key in AWKWARD:
        code = error_code(lambda: s3.get_object(Bucket=bucket, Key=key))
        check(code == "NoSuchKey", f"{label}: get of deleted {key!r} gave {code}")
        code = error_code(lambda: s3.head_object(Bucket=bucket, Key=key))
        check(code == "404", f"{label}: head of deleted {key!r} gave {code}")
    code = error_code(lambda: s3.get_object(Bucket=bucket + "-none", Key="k"))
    check(code == "NoSuchBucket", f"{label}: get from a missing bucket gave {code}")
    check(s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, f"{label}: bucket not empty after deletes")
    s3.delete_bucket(Bucket=bucket)


def dynamo_round(ddb, label):
    ddb.create_table(
        TableName="e2e-things",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"id": {"S": "ü & +"}, "n": {"N": "42"}, "tags": {"SS": ["a", "b"]}}
    ddb.put_item(TableName="e2e-things", Item=item)
    got = ddb.get_item(TableName="e2e-things", Key={"id": {"S": "ü & +"}})
    check(got.get("Item") == item, f"{label}: get_item {got.get('Item')} != {item}")
    missing = ddb.get_item(TableName="e2e-things", Key={"id": {"S": "nope"}})
    check("Item" not in missing, f"{label}: get_item of a missing key {missing}")
    names = ddb.list_tables()["TableNames"]
    check("e2e-things" in names, f"{label}: list_tables {names}")
    code = error_code(lambda: ddb.get_item(TableName="e2e-none", Key={"id": {"S": "x"}}))
    check(code == "ResourceNotFoundException", f"{label}: missing table gave {code}")


def main(argv):
    if len(argv) not in (5, 7):
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, akid, secret, region = argv[1:5]
    print(f"boto3 {boto3.__version__}, botocore {botocore.__version__} -> {endpoint}", file=sys.stderr)
    s3, ddb = clients(endpoint, akid, secret, region)
    s3_round(s3, "countersign-e2e", region, "static")
    dynamo_round(ddb, "static")

    # A wrong secret must be refused, with S3's code.
    bad, _ = clients(endpoint, akid, "x" * 40, region)
    code = error_code(lambda: bad.list_buckets())
    check(code == "SignatureDoesNotMatch", f"a wrong secret gave {code}")

    if len(argv) == 7:
        role_arn, token = argv[5:7]
        sts = boto3.client(
            "sts",
            endpoint_url=endpoint,
            region_name=region,
            config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}),
        )
        creds = sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="e2e", WebIdentityToken=token
        )["Credentials"]
        check(creds["AccessKeyId"].startswith("ASIA"), f"STS AccessKeyId {creds['AccessKeyId']}")
        s3t, ddbt = clients(
            endpoint, creds["AccessKeyId"], creds["SecretAccessKey"], region, creds["SessionToken"]
        )
        s3_round(s3t, "countersign-e2e-sts", region, "sts")
        check("e2e-things" in ddbt.list_tables()["TableNames"], "sts: list_tables")
        code = error_code(
            lambda: sts.assume_role_with_web_identity(
                RoleArn=role_arn, RoleSessionName="e2e", WebIdentityToken=token + "x"
            )
        )
        check(code == "InvalidIdentityToken", f"STS with a wrong token gave {code}")

    if FAILURES:
        print(f"{len(FAILURES)} mismatch(es) between boto3 and the fake", file=sys.stderr)
        return 1
    print("boto3 and the fake agree", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except ClientError as e:
        print(f"MISMATCH: unexpected AWS error {e.response.get('Error')} in {e.operation_name}", file=sys.stderr)
        sys.exit(1)
