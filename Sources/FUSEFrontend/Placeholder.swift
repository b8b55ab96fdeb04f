// FUSE front-end (libfuse3 low-level API) — see FUSESession.swift
