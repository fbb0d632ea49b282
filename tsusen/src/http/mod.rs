//! What the two HTTP surfaces share: `tsusen run --metrics` and `tsusen
//! serve`. [`listen`] parses and binds their addresses and refuses a
//! non-loopback one without credentials; [`auth`] holds those credentials;
//! [`connections`] serves a listener with a cap on connections and timeouts,
//! so clients cannot take the descriptors the day files need.

pub mod auth;
pub mod connections;
pub mod listen;
