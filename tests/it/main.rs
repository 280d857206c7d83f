//! Integration tests of `vz`, run as a user would run it: the real binary against a real control plane
//! (kube-apiserver, etcd and kube-controller-manager on loopback), with `kubectl` as an independent
//! observer. Tests that need no cluster run the binary alone.

mod applications;
mod certificates;
mod common;
mod connectivity;
mod dns;
mod external_dns;
mod faults;
mod flow;
mod gateway_api;
mod judges;
mod lifecycle;
mod mesh;
mod offline;
mod planning;
mod recovery;
mod rollback;
mod s3_state;
mod snapshots;
mod state_cmds;
mod team_state;
mod testenv;
mod upgrades;
mod watch;
