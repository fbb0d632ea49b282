#![no_std]
//! Only the binary matters; this empty library lets `tsusen` declare a build
//! dependency on this crate, so cargo rebuilds when it changes.
