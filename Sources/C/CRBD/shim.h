// librados and librbd (Debian: librados-dev, librbd-dev). No .pc files: linked by name.
#include <rados/librados.h>
#include <rbd/librbd.h>
