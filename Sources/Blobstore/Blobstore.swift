// Blobstore: SPDK-compatible blobstore over a BlockDevice.
import BDev
