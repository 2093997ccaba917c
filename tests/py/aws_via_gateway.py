#!/usr/bin/env python3
"""An unmodified boto3, with placeholder credentials, through countersign's
aws routes: countersign drops boto3's own signature and signs with the real
credentials; the endpoint behind it (countersign's AWS fake) verifies
SigV4 with its own code. The same rounds as aws_e2e.py (boto3 straight to
the fake), so a difference can only come from the gateway.

usage: aws_via_gateway.py S3_ENDPOINT_URL DYNAMODB_ENDPOINT_URL REGION

Each endpoint is countersign's route: http://127.0.0.1:PORT/<route>.
Exits 0 when all agrees; otherwise 1 with one line per mismatch on stderr.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aws_e2e  # noqa: E402  (the same rounds, and its FAILURES list)

PLACEHOLDER_ID = "AKIDPLACEHOLDER00000"
PLACEHOLDER_SECRET = "placeholder-secret-the-gateway-replaces"


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    s3_endpoint, ddb_endpoint, region = argv[1:4]
    s3, _ = aws_e2e.clients(s3_endpoint, PLACEHOLDER_ID, PLACEHOLDER_SECRET, region)
    _, ddb = aws_e2e.clients(ddb_endpoint, PLACEHOLDER_ID, PLACEHOLDER_SECRET, region)
    aws_e2e.s3_round(s3, "countersign-gw", region, "via gateway")
    aws_e2e.dynamo_round(ddb, "via gateway")
    if aws_e2e.FAILURES:
        print(f"{len(aws_e2e.FAILURES)} mismatch(es) through the gateway", file=sys.stderr)
        return 1
    print("boto3 through countersign: all agree", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
