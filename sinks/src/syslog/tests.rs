//! Tests of the syslog sink against in-process loopback peers.
