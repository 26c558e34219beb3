//! OSPFv3 control plane (RFC 5340) for the kubermesh mesh.
