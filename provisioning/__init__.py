"""Fleet provisioning: the `edge-provision` command (see provisioning/README.md).

A fleet directory holds a CA, a registry of identities (agents, devices, operators,
dashboards) and their private material; from it come per-machine bundles and the broker's
password, ACL and listener files.
"""
