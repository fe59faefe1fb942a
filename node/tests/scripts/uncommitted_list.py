"""List Blobs with include=uncommittedblobs as the Python SDK asks for it and parses the answer: a
blob with staged blocks only is listed (a block blob of no bytes) only when asked for; a committed
one is listed once, as committed. argv: the connection string."""
import sys

from azure.storage.blob import BlobServiceClient, BlobType

svc = BlobServiceClient.from_connection_string(sys.argv[1])
ctr = svc.create_container("uncommitted")
ctr.upload_blob("both", b"committed")
for name in ["both", "dir/staged", "staged"]:
    ctr.get_blob_client(name).stage_block("YmxrMQ==", b"block")

assert [b.name for b in ctr.list_blobs()] == ["both"], list(ctr.list_blobs())
listed = {b.name: b for b in ctr.list_blobs(include=["uncommittedblobs"])}
assert sorted(listed) == ["both", "dir/staged", "staged"], sorted(listed)
assert listed["staged"].size == 0 and listed["staged"].blob_type == BlobType.BLOCKBLOB, listed["staged"]
assert listed["both"].size == 9, listed["both"]
walked = sorted(b.name for b in ctr.walk_blobs(include=["uncommittedblobs"], delimiter="/"))
assert walked == ["both", "dir/", "staged"], walked
paged = [b.name for page in ctr.list_blobs(include=["uncommittedblobs"], results_per_page=1).by_page() for b in page]
assert paged == ["both", "dir/staged", "staged"], paged

ctr.get_blob_client("staged").commit_block_list(["YmxrMQ=="])
assert [b.name for b in ctr.list_blobs()] == ["both", "staged"]
print("OK")
