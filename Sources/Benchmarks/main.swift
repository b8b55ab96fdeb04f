print("blobfs-bench: not yet")
