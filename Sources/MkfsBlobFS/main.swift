print("mkfs.blobfs: not yet")
