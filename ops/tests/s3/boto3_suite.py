"""The S3 gateway seen by boto3 (a client no one here wrote).

Usage: boto3_suite.py ENDPOINT ADMIN_KEY ADMIN_SECRET ALICE_KEY ALICE_SECRET
ALICE is an ordinary user; the bucket `private` was made by the admin and chmod 700 before
this runs. Exits non-zero at the first check that fails, naming it.
"""
import hashlib
import os
import sys

import boto3
import botocore
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, ak, sk, alice_k, alice_s = sys.argv[1:6]


def client(key, secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


s3 = client(ak, sk)


def fails(code, f, *a, **kw):
    try:
        f(*a, **kw)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"{f.__name__}: expected {code}, got {got}: {e}"
        return
    raise AssertionError(f"{f.__name__} succeeded; expected {code}")


def check(what, cond):
    assert cond, what
    print("ok:", what)


# Buckets.
s3.create_bucket(Bucket="photos")
fails("BucketAlreadyOwnedByYou", s3.create_bucket, Bucket="photos")
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
check("list_buckets shows the new bucket and hides .shale", "photos" in names and ".shale" not in names)
s3.head_bucket(Bucket="photos")
fails("404", s3.head_bucket, Bucket="nosuchbucket")
fails("NoSuchBucket", s3.put_object, Bucket="nosuchbucket", Key="k", Body=b"x")
fails("NoSuchBucket", s3.list_objects_v2, Bucket="nosuchbucket")

# Objects: put, get, ranges, head, errors.
body = os.urandom(300_000)
r = s3.put_object(Bucket="photos", Key="2024/summer/beach.jpg", Body=body)
etag = r["ETag"]
g = s3.get_object(Bucket="photos", Key="2024/summer/beach.jpg")
check("get returns the bytes put", g["Body"].read() == body and g["ETag"] == etag)
check("head gives the length", s3.head_object(Bucket="photos", Key="2024/summer/beach.jpg")["ContentLength"] == len(body))
for rng, want in [
    ("bytes=0-9", body[0:10]),
    ("bytes=1000-1999", body[1000:2000]),
    ("bytes=299990-", body[299990:]),
    ("bytes=-17", body[-17:]),
    ("bytes=299000-999999", body[299000:]),
]:
    g = s3.get_object(Bucket="photos", Key="2024/summer/beach.jpg", Range=rng)
    check(f"range {rng}", g["Body"].read() == want and g["ResponseMetadata"]["HTTPStatusCode"] == 206)
fails("InvalidRange", s3.get_object, Bucket="photos", Key="2024/summer/beach.jpg", Range="bytes=300000-300010")
fails("NoSuchKey", s3.get_object, Bucket="photos", Key="2024/nothing.jpg")
fails("404", s3.head_object, Bucket="photos", Key="2024/nothing.jpg")
fails("InvalidArgument", s3.put_object, Bucket="photos", Key="a//b", Body=b"x")
s3.put_object(Bucket="photos", Key="empty", Body=b"")
check("an empty object", s3.get_object(Bucket="photos", Key="empty")["Body"].read() == b"")
s3.put_object(Bucket="photos", Key="2024/summer/beach.jpg", Body=b"replaced")
check("a put replaces", s3.get_object(Bucket="photos", Key="2024/summer/beach.jpg")["Body"].read() == b"replaced")

# Listing: prefix, delimiter, continuation.
keys = [f"list/{d}/{i:03d}" for d in ("a", "b", "c") for i in range(7)] + ["list/top", "list-sibling"]
for k in keys:
    s3.put_object(Bucket="photos", Key=k, Body=k.encode())
got, token = [], None
while True:
    kw = {"Bucket": "photos", "Prefix": "list/", "MaxKeys": 4}
    if token:
        kw["ContinuationToken"] = token
    page = s3.list_objects_v2(**kw)
    got += [o["Key"] for o in page.get("Contents", [])]
    check("pages hold at most MaxKeys", page["KeyCount"] <= 4)
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
check("continuation lists every key once, in order", got == sorted(k for k in keys if k.startswith("list/")))
page = s3.list_objects_v2(Bucket="photos", Prefix="list/", Delimiter="/")
check("delimiter gives common prefixes", [p["Prefix"] for p in page["CommonPrefixes"]] == ["list/a/", "list/b/", "list/c/"])
check("delimiter gives the level's objects", [o["Key"] for o in page["Contents"]] == ["list/top"])
page = s3.list_objects_v2(Bucket="photos", Prefix="list/b/00")
check("a prefix inside a directory", [o["Key"] for o in page["Contents"]] == [f"list/b/{i:03d}" for i in range(7)])
page = s3.list_objects_v2(Bucket="photos", StartAfter="list/c/005", Prefix="list/")
check("start-after", [o["Key"] for o in page["Contents"]] == ["list/c/006", "list/top"])
paginator = s3.get_paginator("list_objects_v2")
n = sum(len(p.get("Contents", [])) for p in paginator.paginate(Bucket="photos", PaginationConfig={"PageSize": 5}))
check("the paginator sees every object", n == len(keys) + 2)

# Copy and delete.
r = s3.copy_object(Bucket="photos", Key="copies/beach.jpg", CopySource={"Bucket": "photos", "Key": "2024/summer/beach.jpg"})
check("copy", s3.get_object(Bucket="photos", Key="copies/beach.jpg")["Body"].read() == b"replaced")
fails("NoSuchKey", s3.copy_object, Bucket="photos", Key="x", CopySource={"Bucket": "photos", "Key": "nope"})
s3.delete_object(Bucket="photos", Key="copies/beach.jpg")
fails("NoSuchKey", s3.get_object, Bucket="photos", Key="copies/beach.jpg")
s3.delete_object(Bucket="photos", Key="copies/never-there")
page = s3.list_objects_v2(Bucket="photos", Delimiter="/")
check("an emptied prefix disappears", "copies/" not in [p["Prefix"] for p in page.get("CommonPrefixes", [])])
r = s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": k} for k in keys[:5]]})
check("delete_objects", len(r["Deleted"]) == 5 and not r.get("Errors"))

# Multipart: explicit, then boto3's managed transfer.
part1, part2 = os.urandom(5 << 20), os.urandom(1 << 20)
up = s3.create_multipart_upload(Bucket="photos", Key="big/video.bin")["UploadId"]
e1 = s3.upload_part(Bucket="photos", Key="big/video.bin", UploadId=up, PartNumber=1, Body=part1)["ETag"]
e2 = s3.upload_part(Bucket="photos", Key="big/video.bin", UploadId=up, PartNumber=2, Body=part2)["ETag"]
fails("InvalidPart", s3.complete_multipart_upload, Bucket="photos", Key="big/video.bin", UploadId=up,
      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}, {"PartNumber": 2, "ETag": e2}]})
fails("NoSuchKey", s3.get_object, Bucket="photos", Key="big/video.bin")
s3.complete_multipart_upload(Bucket="photos", Key="big/video.bin", UploadId=up,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
got = s3.get_object(Bucket="photos", Key="big/video.bin")["Body"].read()
check("multipart completes into one object", got == part1 + part2)
fails("NoSuchUpload", s3.upload_part, Bucket="photos", Key="big/video.bin", UploadId=up, PartNumber=3, Body=b"x")
up = s3.create_multipart_upload(Bucket="photos", Key="small.bin")["UploadId"]
t1 = s3.upload_part(Bucket="photos", Key="small.bin", UploadId=up, PartNumber=1, Body=b"a" * 1000)["ETag"]
t2 = s3.upload_part(Bucket="photos", Key="small.bin", UploadId=up, PartNumber=2, Body=b"b" * 1000)["ETag"]
fails("EntityTooSmall", s3.complete_multipart_upload, Bucket="photos", Key="small.bin", UploadId=up,
      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": t1}, {"PartNumber": 2, "ETag": t2}]})
s3.abort_multipart_upload(Bucket="photos", Key="small.bin", UploadId=up)
fails("NoSuchUpload", s3.upload_part, Bucket="photos", Key="small.bin", UploadId=up, PartNumber=1, Body=b"x")
blob = os.urandom(12 << 20)
path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"boto3-{os.getpid()}.bin")
with open(path, "wb") as f:
    f.write(blob)
cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20, max_concurrency=3)
s3.upload_file(path, "photos", "managed/upload.bin", Config=cfg)
s3.download_file("photos", "managed/upload.bin", path + ".back", Config=cfg)
with open(path + ".back", "rb") as f:
    check("managed multipart upload and ranged download", hashlib.sha256(f.read()).digest() == hashlib.sha256(blob).digest())
os.remove(path)
os.remove(path + ".back")

# Authentication and identity.
fails("SignatureDoesNotMatch", client(ak, sk[:-1] + ("A" if sk[-1] != "A" else "B")).list_buckets)
fails("InvalidAccessKeyId", client("SHLNOSUCHKEY0000000", sk).list_buckets)
alice = client(alice_k, alice_s)
fails("AccessDenied", alice.get_object, Bucket="private", Key="secret.txt")
fails("AccessDenied", alice.put_object, Bucket="private", Key="planted.txt", Body=b"x")
alice.create_bucket(Bucket="alices")
alice.put_object(Bucket="alices", Key="mine.txt", Body=b"alice's")
check("a user works in her own bucket", alice.get_object(Bucket="alices", Key="mine.txt")["Body"].read() == b"alice's")
fails("BucketAlreadyExists", alice.create_bucket, Bucket="photos")
fails("AccessDenied", alice.delete_bucket, Bucket="photos")
alice.delete_object(Bucket="alices", Key="mine.txt")
alice.delete_bucket(Bucket="alices")
check("a user deletes her own bucket", "alices" not in [b["Name"] for b in s3.list_buckets()["Buckets"]])

# Buckets must be empty to go.
fails("BucketNotEmpty", s3.delete_bucket, Bucket="photos")
s3.create_bucket(Bucket="scratch")
s3.delete_bucket(Bucket="scratch")
fails("NoSuchBucket", s3.delete_bucket, Bucket="scratch")
print("ALL OK")
