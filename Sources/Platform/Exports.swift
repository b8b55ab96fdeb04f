// Platform: the only module that talks to C (libaio, libnuma, epoll, ioctls).
// Everything above speaks Swift types: FileDescriptor, Errno, AlignedBuffer, AIOContext.
@_exported import SystemPackage
