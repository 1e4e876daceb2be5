"""DGX Spark cluster configuration over SSH: inventory, pure facts and plans, Fabric tasks (`fab spark.<task>`)."""
