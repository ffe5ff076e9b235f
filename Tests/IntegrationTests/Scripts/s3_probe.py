#!/usr/bin/env python3
"""Readiness probe for a test S3 server: creates the bucket kmsfs-snapshots
(if needed) and round-trips one object, signing with SigV4 from the standard
library (no boto3 in the SeaweedFS venv). Exit 0 when the object came back.
  s3_probe.py ENDPOINT ACCESS_KEY SECRET_KEY"""
import datetime, hashlib, hmac, sys, urllib.error, urllib.request

endpoint, ak, sk = sys.argv[1:4]
host = endpoint.split("://", 1)[1]


def request(method, path, body=b""):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, "", "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
    scope = f"{day}/us-east-1/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (day, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(endpoint + path, data=body if method == "PUT" else None, method=method)
    for k, v in headers.items():
        if k != "host":
            req.add_header(k, v)
    req.add_header("Authorization", f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={signature}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


status, text = request("PUT", "/kmsfs-snapshots")
if status != 200 and b"BucketAlreadyOwnedByYou" not in text and b"BucketAlreadyExists" not in text:
    sys.exit(1)
status, _ = request("PUT", "/kmsfs-snapshots/.probe", b"kmsfs")
if status != 200:
    sys.exit(1)
status, body = request("GET", "/kmsfs-snapshots/.probe")
request("DELETE", "/kmsfs-snapshots/.probe")
sys.exit(0 if status == 200 and body == b"kmsfs" else 1)
