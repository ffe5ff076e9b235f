print("kmsfs")
