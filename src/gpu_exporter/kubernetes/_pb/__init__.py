"""Generated kubelet pod-resources v1 stubs (tools/gen_proto.sh); do not edit."""
