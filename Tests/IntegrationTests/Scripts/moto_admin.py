#!/usr/bin/env python3
"""Admin steps on the moto test server, done with boto3 as a KMS admin would
with the aws CLI. Usage: moto_admin.py ENDPOINT COMMAND [ARGS]; credentials
come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY except for `setup`.

  setup                       IAM users, key + alias/kmsfs, bucket; turns on auth; prints KEY=VALUE
  create-key                  prints the new key's ARN
  update-alias ALIAS KEY      points ALIAS at KEY
  rotate KEY                  rotates the key material now (RotateKeyOnDemand)
  disable KEY | enable KEY
  schedule-deletion KEY | cancel-deletion KEY
  put-object BUCKET KEY TEXT  an object with any key (a hostile listing)
"""
import json, sys, urllib.request
import boto3

endpoint, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
REGION = "us-east-1"


def client(service, key=None, secret=None):
    kw = {"endpoint_url": endpoint, "region_name": REGION}
    if key:
        kw.update(aws_access_key_id=key, aws_secret_access_key=secret)
    return boto3.client(service, **kw)


if command == "setup":
    iam = client("iam", "bootstrap", "bootstrap")
    out = {}
    for user, policy in (("kmsfs", {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kms:*", "s3:*"], "Resource": "*"}]}),
                         ("kmsfs-denied", None)):
        iam.create_user(UserName=user)
        if policy:
            iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName=user)["AccessKey"]
        out[user] = (k["AccessKeyId"], k["SecretAccessKey"])
    kid, secret = out["kmsfs"]
    kms = client("kms", kid, secret)
    key = kms.create_key(Description="kmsfs test key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/kmsfs", TargetKeyId=key["KeyId"])
    client("s3", kid, secret).create_bucket(Bucket="kmsfs-snapshots")
    req = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req).read()
    print(f"MOTO_ACCESS_KEY_ID={kid}\nMOTO_SECRET_ACCESS_KEY={secret}")
    print(f"MOTO_DENIED_ACCESS_KEY_ID={out['kmsfs-denied'][0]}\nMOTO_DENIED_SECRET_ACCESS_KEY={out['kmsfs-denied'][1]}")
    print(f"MOTO_KEY_ID={key['KeyId']}\nMOTO_KEY_ARN={key['Arn']}\nMOTO_REGION={REGION}\nMOTO_BUCKET=kmsfs-snapshots")
    sys.exit(0)

if command == "put-object":
    client("s3").put_object(Bucket=args[0], Key=args[1], Body=args[2].encode())
    sys.exit(0)

kms = client("kms")
# moto 5.2.1's key-state calls look keys up by id only (an ARN raises KeyError -> HTTP 500).
args = [a.split(":key/")[-1] if ":key/" in a and command != "update-alias" else a for a in args]
if command == "create-key":
    print(kms.create_key(Description="kmsfs test key")["KeyMetadata"]["Arn"])
elif command == "update-alias":
    kms.update_alias(AliasName=args[0], TargetKeyId=args[1])
elif command == "rotate":
    kms.rotate_key_on_demand(KeyId=args[0])
elif command == "disable":
    kms.disable_key(KeyId=args[0])
elif command == "enable":
    kms.enable_key(KeyId=args[0])
elif command == "schedule-deletion":
    kms.schedule_key_deletion(KeyId=args[0], PendingWindowInDays=7)
elif command == "cancel-deletion":
    kms.cancel_key_deletion(KeyId=args[0])
    kms.enable_key(KeyId=args[0])
else:
    sys.exit(f"unknown command {command}")
