@_exported import struct Platform.SplitMix
