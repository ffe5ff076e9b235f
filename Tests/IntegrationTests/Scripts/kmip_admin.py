#!/usr/bin/env python3
"""Admin steps on the PyKMIP test server, as the key owner kmsfs-client.
Usage: kmip_admin.py ENV_FILE COMMAND [UID]
  create          creates and activates an AES-256 Encrypt|Decrypt key; prints its UID
  create-inactive creates one and leaves it Pre-Active; prints its UID
  revoke UID      revokes (deactivates) a key
"""
import sys, warnings
warnings.filterwarnings("ignore")
from kmip.pie.client import ProxyKmipClient
from kmip.core import enums

env = dict(line.strip().split("=", 1) for line in open(sys.argv[1]) if "=" in line)
command, args = sys.argv[2], sys.argv[3:]
client = ProxyKmipClient(hostname=env["KMIP_HOST"], port=int(env["KMIP_PORT"]), cert=env["KMIP_CLIENT_CERT"],
                         key=env["KMIP_CLIENT_KEY"], ca=env["KMIP_CA"], config_file="/dev/null",
                         kmip_version=enums.KMIPVersion.KMIP_1_2)
with client:
    if command in ("create", "create-inactive"):
        uid = client.create(enums.CryptographicAlgorithm.AES, 256,
                            cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT])
        if command == "create":
            client.activate(uid)
        print(uid)
    elif command == "revoke":
        client.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, args[0])
    else:
        sys.exit(f"unknown command {command}")
