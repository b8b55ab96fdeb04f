// libfuse3 low-level API. FUSE_USE_VERSION must be defined before the include and a
// cSettings define does not reach Swift's importer, hence this shim header.
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
